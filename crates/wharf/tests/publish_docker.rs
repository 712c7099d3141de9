//! Wharf's main job for real on this machine: the real `wharf server` and `wharf
//! agent` binaries, the real Docker Engine, a real Distribution registry with a
//! bcrypt password (started on a free port by wharf-testkit), and the two-version
//! sample image pushed to it. The agents pull through the Engine API with a
//! password full of shell- and base64-unfriendly characters.
//!
//! Every test here is named `docker_*`, so `cargo test docker_` runs this tier alone.

mod common;

use common::{Cli, TestAgent, TestServer};
use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};
use wharf_testkit::docker::{socket_path, unique_name};
use wharf_testkit::registry::RegistryHarness;
use wharf_testkit::sample_image;

const PUSHER: (&str, &str) = ("pusher", "push-secret");
const DEPLOYER: &str = "deploy";
/// The password the agents pull with: `?` and `>` break bollard's own header
/// encoding, and the rest break naive shell quoting.
const DEPLOY_PASSWORD: &str = "p?a>s/s+w=o\"r' d";
const NAMESPACE: &str = "e2e";

/// A registry holding v1 and v2 of the sample image, a server, logged-in CLI and
/// agents on the real Docker Engine, an application `web` with a group `prod` of
/// all agents, a registry resource `main`, and deployments `v1` and `v2`.
struct Env {
    dir: tempfile::TempDir,
    registry: RegistryHarness,
    server: TestServer,
    cli: Cli,
    agents: Vec<TestAgent>,
    repository: String,
    instance_ids: Vec<String>,
}

impl Env {
    async fn start(names: &[&str]) -> Env {
        let registry = RegistryHarness::start(&[PUSHER, (DEPLOYER, DEPLOY_PASSWORD)])
            .await
            .expect("start a registry");
        let repository = unique_name("hello");
        for version in ["v1", "v2"] {
            let local = format!("wharf-e2e-{repository}:{version}");
            sample_image::build(version, &local)
                .await
                .expect("build the sample image");
            sample_image::push(&local, &registry, NAMESPACE, &repository, version, PUSHER)
                .await
                .expect("push the sample image");
            // Only the registry has it now, so the agent's pull is real.
            sample_image::remove_local(&local)
                .await
                .expect("remove the local image");
        }

        let dir = tempfile::tempdir().expect("temp dir");
        let server = TestServer::start(
            &dir.path().join("data"),
            &dir.path().join("server.log"),
            "info",
        );
        let cli = Cli::new();
        cli.run(&[
            "login",
            "--server",
            &server.url,
            "--token",
            &server.admin_token(),
        ])
        .ok();
        let token = cli
            .run(&[
                "instance",
                "token",
                "create",
                "--uses",
                &names.len().to_string(),
            ])
            .ok()
            .stdout
            .trim()
            .to_owned();
        let agents = names
            .iter()
            .map(|name| {
                TestAgent::start_with_docker(
                    &server.url,
                    &token,
                    name,
                    &dir.path().join(name),
                    &socket_path(),
                )
            })
            .collect();
        let mut env = Env {
            dir,
            registry,
            server,
            cli,
            agents,
            repository,
            instance_ids: Vec::new(),
        };
        env.instance_ids = env.wait_online(names);
        env.cli.run(&["app", "create", "web"]).ok();
        env.cli.run(&["group", "create", "web", "prod"]).ok();
        let mut add = vec!["group", "add-instances", "web", "prod"];
        add.extend_from_slice(names);
        env.cli.run(&add).ok();
        env.registry_resource("main", DEPLOY_PASSWORD);
        for version in ["v1", "v2"] {
            env.deployment(version, "main", version, &start_script(), &stop_script());
        }
        env
    }

    fn wait_online(&self, names: &[&str]) -> Vec<String> {
        let start = Instant::now();
        loop {
            let list = self.json(&["instance", "list"]);
            let ids: Vec<String> = names
                .iter()
                .filter_map(|name| {
                    list.as_array()?
                        .iter()
                        .find(|i| i["name"] == *name && i["status"] == "online")
                        .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
                })
                .collect();
            if ids.len() == names.len() {
                return ids;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "agents not online: {list:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn registry_resource(&self, name: &str, password: &str) {
        self.cli
            .run_stdin(
                &[
                    "registry",
                    "create",
                    name,
                    "--endpoint",
                    &self.registry.addr(),
                    "--username",
                    DEPLOYER,
                    "--password-stdin",
                ],
                password,
            )
            .ok();
    }

    fn deployment(&self, name: &str, registry: &str, tag: &str, start: &str, stop: &str) {
        let file = |suffix: &str, text: &str| {
            let path = self.dir.path().join(format!("{name}-{suffix}"));
            fs::write(&path, text).expect("write a script");
            path.to_str().expect("utf-8 path").to_owned()
        };
        let (start, stop) = (file("start.sh", start), file("stop.sh", stop));
        let workdir = self.dir.path().join("srv").join(name);
        self.cli
            .run(&[
                "deployment",
                "create",
                "web",
                name,
                "--type",
                "docker-image",
                "--registry",
                registry,
                "--namespace",
                NAMESPACE,
                "--repository",
                &self.repository,
                "--tag",
                tag,
                "--workdir",
                workdir.to_str().expect("utf-8 path"),
                "--start-script",
                &start,
                "--stop-script",
                &stop,
                "--step-timeout",
                "60s",
                "--pull-timeout",
                "60s",
            ])
            .ok();
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.cli.run(&all).ok().json()
    }

    fn logs(&self) -> String {
        let agents: String = self
            .agents
            .iter()
            .map(|a| format!("--- {}\n{}", a.name, a.log()))
            .collect();
        format!("--- server\n{}\n{agents}", self.server.log())
    }

    /// What the sample container of each instance answers on /hello, in instance
    /// order ("" when it runs no container).
    fn answers(&self) -> Vec<String> {
        self.instance_ids.iter().map(|id| hello_of(id)).collect()
    }

    /// Waits for the newest release of web/prod to be in `state`.
    fn wait_newest(&self, state: &str) -> Value {
        let start = Instant::now();
        loop {
            let list = self.json(&["release", "list", "web", "prod"]);
            if list[0]["state"] == state {
                return list[0].clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "never {state}: {list:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in &self.instance_ids {
            let _ = Command::new("docker")
                .args(["rm", "-f", &container_of(id)])
                .output();
        }
        for version in ["v1", "v2"] {
            let image = format!(
                "{}/{NAMESPACE}/{}:{version}",
                self.registry.addr(),
                self.repository
            );
            let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
        }
    }
}

/// The sample deployment's scripts, with a random host port so that tests (and
/// several agents on this one engine) never collide.
fn start_script() -> String {
    let shipped = include_str!("../../../sample-app/deploy/start.sh");
    shipped.replace("\nport=8080\n", "\nport=random\n")
}

fn stop_script() -> String {
    include_str!("../../../sample-app/deploy/stop.sh").to_owned()
}

fn container_of(instance_id: &str) -> String {
    format!("wharf-sample-{instance_id}")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn hello_of(instance_id: &str) -> String {
    let port = docker(&["port", &container_of(instance_id), "8080/tcp"]);
    let Some(port) = port
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .map(str::to_owned)
    else {
        return String::new();
    };
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/hello"),
        ])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_no_secret(text: &str, what: &str) {
    assert!(
        !text.contains(DEPLOY_PASSWORD),
        "the registry password leaked into {what}"
    );
    assert!(
        !text.contains("p?a>s"),
        "part of the registry password leaked into {what}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_v1_then_v2_then_rollback() {
    let env = Env::start(&["host-a"]).await;
    let id = &env.instance_ids[0];

    let run = env
        .cli
        .run(&["release", "create", "web", "prod", "--deployment", "v1"])
        .ok();
    assert!(
        run.stderr.contains("pull"),
        "the follower shows the steps: {run:#?}"
    );
    assert_eq!(env.answers(), ["hello from v1\n"]);
    let group = env.json(&["group", "show", "web", "prod"]);
    assert_eq!(group["current_deployment"], "v1");
    let digest_v1 = group["instances"][0]["image_digest"]
        .as_str()
        .expect("a digest")
        .to_owned();
    assert!(digest_v1.starts_with("sha256:"), "{group:#}");

    env.cli
        .run(&["release", "create", "web", "prod", "--deployment", "v2"])
        .ok();
    assert_eq!(env.answers(), ["hello from v2\n"]);
    // The old container is gone: one sample container, running v2's image.
    let containers = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}", container_of(id)),
        "--format",
        "{{.Image}}",
    ]);
    assert_eq!(containers.lines().count(), 1, "{containers}");
    assert!(containers.ends_with(":v2"), "{containers}");
    let group = env.json(&["group", "show", "web", "prod"]);
    assert_eq!(
        (
            group["current_deployment"].as_str(),
            group["previous_deployment"].as_str()
        ),
        (Some("v2"), Some("v1"))
    );
    assert_ne!(group["instances"][0]["image_digest"], digest_v1.as_str());
    // The stop script of v2's release found v1 running; its log says so.
    let newest = env.json(&["release", "list", "web", "prod"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = env.json(&["release", "logs", &newest, "--step", "stop"]);
    assert!(
        logs[0]["output"].as_str().unwrap().contains("removed"),
        "{logs:#}"
    );

    env.cli.run(&["release", "rollback", "web", "prod"]).ok();
    assert_eq!(env.answers(), ["hello from v1\n"]);
    let group = env.json(&["group", "show", "web", "prod"]);
    assert_eq!(group["current_deployment"], "v1");
    assert_eq!(group["instances"][0]["image_digest"], digest_v1.as_str());

    // The password never reached a log: the server's, the agent's or the registry's.
    assert_no_secret(&env.logs(), "the server or agent logs");
    assert_no_secret(
        &env.registry.log_contents().unwrap_or_default(),
        "the registry log",
    );
    let state =
        fs::read_to_string(env.dir.path().join("host-a").join("state.json")).unwrap_or_default();
    assert_no_secret(&state, "the agent's state file");
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_the_stop_script_succeeds_when_nothing_runs_and_a_failing_start_fails_on_start() {
    let env = Env::start(&["host-a"]).await;
    env.deployment(
        "broken",
        "main",
        "v1",
        "echo 'starting the broken version'\nexit 7\n",
        &stop_script(),
    );
    let run = env
        .cli
        .run(&["release", "create", "web", "prod", "--deployment", "broken"])
        .code(1);
    assert!(run.stderr.contains("start"), "{run:#?}");
    let release = env.wait_newest("failed");
    let id = release["id"].as_str().unwrap();
    let shown = env.json(&["release", "show", id]);
    let instance = &shown["batches"][0]["instances"][0];
    let steps: Vec<(&str, &str)> = instance["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("fetch", "succeeded"),
            ("prepare", "succeeded"),
            ("pull", "succeeded"),
            ("stop", "succeeded"),
            ("start", "failed")
        ]
    );
    let logs = env.json(&["release", "logs", id, "--step", "stop"]);
    assert!(
        logs[0]["output"]
            .as_str()
            .unwrap()
            .contains("nothing to stop"),
        "{logs:#}"
    );
    let logs = env.json(&["release", "logs", id, "--step", "start"]);
    assert_eq!(logs[0]["exit_code"], 7);
    assert!(
        logs[0]["output"]
            .as_str()
            .unwrap()
            .contains("starting the broken version"),
        "{logs:#}"
    );
    assert_eq!(
        env.json(&["group", "show", "web", "prod"])["current_deployment"],
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_a_first_pause_release_waits_for_continue_and_cancel_stops_it() {
    let env = Env::start(&["host-a", "host-b"]).await;
    env.cli
        .run(&[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v1",
            "--batches",
            "2",
            "--pause",
            "first",
            "--detach",
        ])
        .ok();
    let paused = env.wait_newest("paused");
    let answers = env.answers();
    assert_eq!(
        answers.iter().filter(|a| *a == "hello from v1\n").count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| a.is_empty()).count(),
        1,
        "{answers:?}"
    );
    env.cli
        .run(&["release", "continue", paused["id"].as_str().unwrap()])
        .ok();
    env.wait_newest("succeeded");
    assert_eq!(env.answers(), ["hello from v1\n", "hello from v1\n"]);

    // v2 pauses after its first batch; cancelling it leaves the second host on v1.
    env.cli
        .run(&[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v2",
            "--batches",
            "2",
            "--pause",
            "first",
            "--detach",
        ])
        .ok();
    let paused = env.wait_newest("paused");
    env.cli
        .run(&["release", "cancel", paused["id"].as_str().unwrap()])
        .ok();
    let cancelled = env.wait_newest("cancelled");
    assert_eq!(
        (
            cancelled["counts"]["succeeded"].as_u64(),
            cancelled["counts"]["cancelled"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let mut answers = env.answers();
    answers.sort();
    assert_eq!(answers, ["hello from v1\n", "hello from v2\n"]);
    assert_eq!(
        env.json(&["group", "show", "web", "prod"])["current_deployment"],
        "v1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_wrong_credentials_and_missing_images_fail_the_pull_step() {
    let env = Env::start(&["host-a"]).await;
    env.registry_resource("wrong", "not-the-password");
    env.deployment("bad-auth", "wrong", "v1", &start_script(), &stop_script());
    env.deployment("missing", "main", "v9", &start_script(), &stop_script());
    for (deployment, expected) in [("bad-auth", "auth"), ("missing", "not found")] {
        env.cli
            .run(&[
                "release",
                "create",
                "web",
                "prod",
                "--deployment",
                deployment,
            ])
            .code(1);
        let release = env.wait_newest("failed");
        let shown = env.json(&["release", "show", release["id"].as_str().unwrap()]);
        let instance = &shown["batches"][0]["instances"][0];
        let pull = instance["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "pull")
            .expect("a pull step");
        assert_eq!(pull["state"], "failed", "{shown:#}");
        let message = pull["message"].as_str().unwrap_or_default().to_lowercase();
        assert!(message.contains(expected), "{deployment}: {message}");
        assert!(
            instance["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["name"] != "start"),
            "start ran after a failed pull"
        );
        assert_no_secret(&message, "the pull error");
    }
    assert_eq!(env.answers(), [""]);
}
