//! Releases from the command line with real agents: the real `wharf server`, real
//! `wharf agent` processes registered with a token from `wharf instance token
//! create`, and `command` deployments whose scripts run in a temporary directory.
//! Following prints plain lines here, since stderr is not a terminal.

mod common;

use common::{Cli, TestAgent, TestServer};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A server, a logged-in CLI and agents, all in one temporary directory.
struct Fleet {
    dir: tempfile::TempDir,
    /// Kept running for the fleet's life.
    _server: TestServer,
    cli: Cli,
    agents: Vec<TestAgent>,
}

impl Fleet {
    /// Starts a server and one agent per name, waits for them to be online, and
    /// puts them all in group `prod` of application `web`.
    fn start(names: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = TestServer::start(
            &dir.path().join("data"),
            &dir.path().join("server.log"),
            "info",
        );
        let cli = Cli::new();
        let admin = server.admin_token();
        cli.run(&["login", "--server", &server.url, "--token", &admin])
            .ok();
        let uses = names.len().to_string();
        let token = cli
            .run(&["instance", "token", "create", "--uses", &uses])
            .ok()
            .stdout
            .trim()
            .to_owned();
        let agents = names
            .iter()
            .map(|name| TestAgent::start(&server.url, &token, name, &dir.path().join(name)))
            .collect();
        let fleet = Fleet {
            dir,
            _server: server,
            cli,
            agents,
        };
        fleet.wait_online(names);
        fleet.cli.run(&["app", "create", "web"]).ok();
        fleet.cli.run(&["group", "create", "web", "prod"]).ok();
        let mut add = vec!["group", "add-instances", "web", "prod"];
        add.extend_from_slice(names);
        fleet.cli.run(&add).ok();
        fleet
    }

    #[track_caller]
    fn wait_online(&self, names: &[&str]) {
        let start = Instant::now();
        loop {
            let list = self.json(&["instance", "list"]);
            let online = |name: &&str| {
                list.as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["name"] == *name && i["status"] == "online")
            };
            if names.iter().all(online) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "agents not online: {list:#}\nlogs:\n{}",
                self.agent_logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn agent_logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| format!("--- {}\n{}", a.name, a.log()))
            .collect()
    }

    fn run(&self, args: &[&str]) -> common::Run {
        self.cli.run(args)
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.cli.run(&all).ok().json()
    }

    /// A `command` deployment of `web` whose start script is `start`; scripts run
    /// in a working directory inside the test's temporary directory.
    fn deployment(&self, name: &str, start: &str) {
        let path = |file: &str| -> PathBuf { self.dir.path().join(format!("{name}-{file}")) };
        fs::write(path("start.sh"), start).unwrap();
        fs::write(path("stop.sh"), "echo stopping \"$WHARF_DEPLOYMENT\"\n").unwrap();
        let workdir = self.dir.path().join("work").join(name);
        self.run(&[
            "deployment",
            "create",
            "web",
            name,
            "--type",
            "command",
            "--workdir",
            workdir.to_str().unwrap(),
            "--start-script",
            path("start.sh").to_str().unwrap(),
            "--stop-script",
            path("stop.sh").to_str().unwrap(),
            "--step-timeout",
            "30s",
        ])
        .ok();
    }

    /// The newest release of `web/prod`, once it is in `state`.
    #[track_caller]
    fn wait_newest(&self, state: &str) -> Value {
        let start = Instant::now();
        loop {
            let list = self.json(&["release", "list", "web", "prod"]);
            if let Some(newest) = list.as_array().unwrap().first() {
                if newest["state"] == state {
                    return newest.clone();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no release became {state}: {list:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn release_id(text: &str) -> String {
    let at = text.find("r-").expect("a release id");
    text[at..at + 18].to_owned()
}

#[test]
fn release_usage_errors_exit_2() {
    let cli = Cli::new()
        .env("WHARF_SERVER", "http://127.0.0.1:9")
        .env("WHARF_TOKEN", "unused");
    let cases: &[&[&str]] = &[
        &["release", "create", "web", "prod"],
        &[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v1",
            "--batches",
            "0",
        ],
        &[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v1",
            "--batches",
            "101",
        ],
        &[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v1",
            "--pause",
            "sometimes",
        ],
        &[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v1",
            "--batch-interval",
            "soon",
        ],
        &["release", "list", "web", "prod", "extra"],
        &["release", "list", "--limit", "0"],
        &["release", "logs"],
        &["release", "rollback", "web"],
        &[
            "agent",
            "--server",
            "http://127.0.0.1:9",
            "--label",
            "no-equals-sign",
        ],
        &[
            "agent",
            "--server",
            "http://127.0.0.1:9",
            "--label",
            "bad key=x",
        ],
        &[
            "agent",
            "--server",
            "http://127.0.0.1:9",
            "--name",
            "not a name",
        ],
    ];
    for args in cases {
        let run = cli.run(args).code(2);
        assert!(run.stderr.contains("error"), "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    cli.run(&[
        "release",
        "create",
        "web",
        "prod",
        "--deployment",
        "v1",
        "--pause",
        "first",
        "--batch-interval",
        "30s",
    ])
    .code(2)
    .error_mentions(&["--batch-interval", "--pause auto"]);
    // The agent takes its server from --server or WHARF_SERVER only, never from a
    // saved login, and a label key given twice is refused.
    Cli::new()
        .run(&["agent", "--state-dir", "/nonexistent"])
        .code(2)
        .error_mentions(&["--server", "WHARF_SERVER"]);
    cli.run(&["agent", "--label", "a=1", "--label", "a=2"])
        .code(2)
        .error_mentions(&["--label a="]);

    let version = cli.run(&["--version"]).ok();
    assert!(
        version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{version:#?}"
    );
    let version = cli.run(&["agent", "--version"]).ok();
    assert!(
        version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{version:#?}"
    );
    let help = cli.run(&["agent", "--help"]).ok();
    assert!(
        help.stdout.contains("WHARF_REGISTRATION_TOKEN"),
        "{help:#?}"
    );
}

#[test]
fn releases_follow_to_success_or_failure_with_one_agent() {
    let mut fleet = Fleet::start(&["web-1"]);
    fleet.deployment("v1", "echo \"starting $WHARF_DEPLOYMENT\"\n");
    fleet.deployment("bad", "echo boom; exit 3\n");
    fleet.deployment(
        "slow",
        "for i in 1 2 3 4 5; do echo \"line $i\"; sleep 0.3; done\n",
    );

    // Followed in plain-lines mode: one line per change, on stderr; one summary
    // line on stdout.
    let run = fleet
        .run(&["release", "create", "web", "prod", "--deployment", "v1"])
        .ok();
    let id = release_id(&run.stdout);
    assert!(
        run.stdout.starts_with(&format!("Release {id} succeeded")),
        "{run:#?}"
    );
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    for line in [
        &format!("Release {id} publishes v1 to web/prod: 1 instance(s) in 1 batch(es)"),
        "batch 1/1 web-1: prepare succeeded",
        "batch 1/1 web-1: stop succeeded (exit 0)",
        "batch 1/1 web-1: start succeeded (exit 0)",
        "web-1 succeeded in ",
        &format!("release {id} succeeded"),
    ] {
        assert!(run.stderr.contains(line), "{line:?} missing: {run:#?}");
    }
    let run = fleet.run(&["release", "show", &id]).ok();
    assert!(
        run.stdout.contains("State:                succeeded")
            && run.stdout.contains("Batch 1/1: succeeded")
            && run.stdout.contains("start    succeeded  0"),
        "{run:#?}"
    );
    let run = fleet.run(&["release", "logs", &id, "--step", "start"]).ok();
    assert_eq!(
        run.stdout, "== web-1 start (exit 0)\nstarting v1\n",
        "{run:#?}"
    );

    // --output json: the final release on stdout, progress still on stderr.
    let run = fleet
        .run(&[
            "-o",
            "json",
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v1",
        ])
        .ok();
    let release = run.json();
    assert_eq!(release["state"], "succeeded", "{run:#?}");
    assert_eq!(release["counts"]["succeeded"], 1);
    let steps = release["batches"][0]["instances"][0]["steps"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fetch", "prepare", "stop", "start"]);
    assert!(run.stderr.contains("web-1 succeeded"), "{run:#?}");

    // A failing start script: exit 1, the instance's failure and where to look.
    let run = fleet
        .run(&["release", "create", "web", "prod", "--deployment", "bad"])
        .code(1);
    let id = release_id(&run.stdout);
    assert!(
        run.stdout.starts_with(&format!("Release {id} failed")),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("batch 1/1 web-1: start failed (exit 3)")
            && run.stderr.contains("web-1 failed in step start (exit 3)")
            && run.stderr.contains(&format!(
                "wharf release logs {id} --instance web-1 --step start"
            )),
        "{run:#?}"
    );
    let last = run.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with(&format!("error: release {id} failed")),
        "{run:#?}"
    );
    let run = fleet.run(&["release", "logs", &id, "--step", "start"]).ok();
    assert_eq!(run.stdout, "== web-1 start (exit 3)\nboom\n", "{run:#?}");
    let logs = fleet.json(&["release", "logs", &id, "--instance", "web-1"]);
    let start = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["step"] == "start")
        .expect("the start step's log");
    assert_eq!(
        (start["output"].as_str(), start["exit_code"].as_i64()),
        (Some("boom\n"), Some(3))
    );
    fleet
        .run(&["release", "logs", &id, "--step", "nope"])
        .code(1)
        .error_mentions(&["field: step"]);

    // --detach prints the id alone; `show --follow` follows it to its end.
    let run = fleet
        .run(&[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "slow",
            "--detach",
        ])
        .ok();
    let id = run.stdout.trim_end().to_owned();
    assert!(
        id.starts_with("r-") && id.len() == 18 && run.stdout.lines().count() == 1,
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains(&format!("wharf release show {id} --follow")),
        "{run:#?}"
    );
    // `logs --follow` prints each line once, as it comes, and ends with the release.
    let run = fleet.run(&["release", "logs", &id, "--follow"]).ok();
    for i in 1..=5 {
        assert_eq!(
            run.stdout.matches(&format!("line {i}\n")).count(),
            1,
            "{run:#?}"
        );
    }
    assert!(
        run.stdout.contains("== web-1 start (")
            && run.stdout.trim_end().ends_with("== web-1 start (exit 0)"),
        "{run:#?}"
    );
    let run = fleet.run(&["release", "show", &id, "--follow"]).ok();
    assert!(
        run.stdout.starts_with(&format!("Release {id} succeeded")),
        "{run:#?}"
    );
    // Ctrl-C stops the following, not the release, and says how to pick it up.
    let follower = fleet
        .cli
        .spawn(&["release", "create", "web", "prod", "--deployment", "slow"]);
    follower.wait_for_stderr("publishes slow");
    follower.interrupt();
    let run = follower.wait().code(130);
    let interrupted = release_id(&run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "goes on without this command. Follow it again with `wharf release show {interrupted} --follow`"
        )) && run.stdout.is_empty(),
        "{run:#?}"
    );
    let run = fleet
        .run(&["release", "show", &interrupted, "--follow"])
        .ok();
    assert!(
        run.stderr
            .contains(&format!("release {interrupted} succeeded")),
        "{run:#?}"
    );
    // JSON lines with --follow: the output of each step with its offset.
    let run = fleet
        .run(&[
            "-o", "json", "release", "logs", &id, "--follow", "--step", "start",
        ])
        .ok();
    let chunks: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| c["output"].as_str().unwrap())
        .collect();
    assert_eq!(text, "line 1\nline 2\nline 3\nline 4\nline 5\n", "{run:#?}");
    assert_eq!(chunks.last().unwrap()["state"], "succeeded");

    let run = fleet.run(&["release", "list", "web"]).ok();
    assert!(run.stdout.starts_with("ID "), "{run:#?}");
    assert_eq!(run.stdout.lines().count(), 6, "{run:#?}");
    assert_eq!(
        fleet
            .json(&["release", "list", "--limit", "2"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    fleet
        .run(&["release", "show", "r-0000000000000000"])
        .code(1)
        .error_mentions(&["HTTP 404"]);

    // The agent stops cleanly on SIGTERM.
    let status = fleet.agents[0].stop();
    assert!(status.success(), "{status:?}\n{}", fleet.agent_logs());
}

#[test]
fn pauses_continue_cancel_and_rollback_with_two_agents() {
    let fleet = Fleet::start(&["web-1", "web-2"]);
    fleet.deployment("v1", "echo v1 up\n");
    fleet.deployment("v2", "echo v2 up\n");

    // Paused after the first batch: the follower keeps following and says how to
    // go on; a second release of the group is refused, naming the paused one.
    let follower = fleet.cli.spawn(&[
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
    ]);
    let paused = fleet.wait_newest("paused");
    let id = paused["id"].as_str().unwrap().to_owned();
    follower.wait_for_stderr(&format!("wharf release continue {id}"));
    assert!(
        follower
            .stderr_so_far()
            .contains(&format!("release {id} paused after batch 1/2")),
        "{}",
        follower.stderr_so_far()
    );
    fleet
        .run(&["release", "create", "web", "prod", "--deployment", "v2"])
        .code(1)
        .error_mentions(&["active_release", &id]);
    let shown = fleet.json(&["release", "show", &id]);
    assert_eq!(shown["batches"][0]["state"], "succeeded");
    assert_eq!(shown["batches"][1]["state"], "pending");
    let run = fleet.run(&["release", "continue", &id]).ok();
    assert!(run.stdout.contains(&id), "{run:#?}");
    let run = follower.wait().ok();
    // Polling may skip short-lived states (running again, batch 2 running); steps
    // and the end are always reported.
    assert!(
        run.stderr
            .contains("batch 2/2 web-2: start succeeded (exit 0)")
            && run.stderr.contains("web-2 succeeded")
            && run.stderr.contains(&format!("release {id} succeeded")),
        "{run:#?}"
    );
    fleet
        .run(&["release", "continue", &id])
        .code(1)
        .error_mentions(&["not_paused"]);

    // Cancelled while paused: the follower exits 1 with the reason.
    let follower = fleet.cli.spawn(&[
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
    ]);
    let id = fleet.wait_newest("paused")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = fleet.json(&["release", "cancel", &id]);
    assert_eq!(cancelled["state"], "cancelled");
    let run = follower.wait().code(1);
    assert!(
        run.stdout.starts_with(&format!("Release {id} cancelled"))
            && run.stderr.contains("web-2 cancelled")
            && run
                .stderr
                .contains(&format!("error: release {id} cancelled")),
        "{run:#?}"
    );
    fleet
        .run(&["release", "cancel", &id])
        .code(1)
        .error_mentions(&["already_finished"]);
    let group = fleet.json(&["group", "show", "web", "prod"]);
    assert_eq!(group["current_deployment"], "v1", "{group:#}");

    // v1 then v2, then a rollback brings v1 back.
    fleet
        .run(&[
            "release",
            "create",
            "web",
            "prod",
            "--deployment",
            "v2",
            "--batches",
            "2",
        ])
        .ok();
    let group = fleet.json(&["group", "show", "web", "prod"]);
    assert_eq!(
        (&group["current_deployment"], &group["previous_deployment"]),
        (&Value::from("v2"), &Value::from("v1")),
        "{group:#}"
    );
    let run = fleet.run(&["release", "rollback", "web", "prod"]).ok();
    assert!(
        run.stderr.contains("Rollback release r-") && run.stderr.contains("publishes v1"),
        "{run:#?}"
    );
    let group = fleet.json(&["group", "show", "web", "prod"]);
    assert_eq!(group["current_deployment"], "v1", "{group:#}");
    assert!(group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["deployment"] == "v1"));
    let newest = &fleet.json(&["release", "list", "web", "prod", "--limit", "1"])[0];
    assert_eq!(
        (&newest["kind"], &newest["deployment"]),
        (&Value::from("rollback"), &Value::from("v1"))
    );
    let id = fleet
        .run(&["release", "rollback", "web", "prod", "--detach"])
        .ok()
        .stdout
        .trim_end()
        .to_owned();
    let run = fleet.run(&["release", "show", &id, "--follow"]).ok();
    assert!(run.stdout.contains("succeeded"), "{run:#?}");
    assert_eq!(
        fleet.json(&["group", "show", "web", "prod"])["current_deployment"],
        "v2"
    );

    // A group without instances cannot be released to.
    fleet.run(&["group", "create", "web", "empty"]).ok();
    fleet
        .run(&["release", "create", "web", "empty", "--deployment", "v1"])
        .code(1)
        .error_mentions(&["empty_group"]);
    fleet
        .run(&["release", "rollback", "web", "empty"])
        .code(1)
        .error_mentions(&["nothing_to_roll_back"]);
}

// ------------------------------------------------------------------ group execs

fn exec_id(text: &str) -> String {
    let at = text.find("x-").expect("an exec id");
    text[at..at + 18].to_owned()
}

#[test]
fn group_exec_runs_on_every_host_in_batches_and_keeps_each_output() {
    let fleet = Fleet::start(&["web-1", "web-2"]);
    let script = fleet.dir.path().join("prepare.sh");
    fs::write(
        &script,
        "echo \"hello from $WHARF_INSTANCE\"\necho second line\n",
    )
    .unwrap();
    let run = fleet
        .run(&[
            "group",
            "exec",
            "web",
            "prod",
            "--script",
            script.to_str().unwrap(),
            "--batches",
            "2",
            "--timeout",
            "30s",
        ])
        .ok();
    // A summary per host on stdout: state, exit code and the last lines.
    for name in ["web-1", "web-2"] {
        assert!(run.stdout.contains(&format!("== {name} (")), "{run:#?}");
    }
    assert!(run.stdout.contains("succeeded, exit 0"), "{run:#?}");
    assert_eq!(
        run.stdout.matches("   hello from i-").count(),
        2,
        "{run:#?}"
    );
    assert!(run.stdout.contains("2/2 instance(s) succeeded"), "{run:#?}");
    let first = exec_id(&run.stdout);
    let shown = fleet.json(&["exec", "show", &first]);
    assert_eq!(shown["batch_count"], 2);
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["counts"]["succeeded"], 2);

    // A command that fails on one host: its exit status and output are recorded,
    // and the other host is not affected.
    let web_1 = fleet.json(&["instance", "show", "web-1"]);
    let web_1_id = web_1["id"].as_str().unwrap().to_owned();
    let check = format!("echo checked; [ \"$WHARF_INSTANCE\" != {web_1_id} ]");
    let run = fleet
        .cli
        .run(&[
            "--output",
            "json",
            "group",
            "exec",
            "web",
            "prod",
            "--batches",
            "2",
            "--",
            "sh",
            "-c",
            &check,
        ])
        .code(1);
    let report = run.json();
    let exec = &report["exec"];
    assert_eq!(exec["state"], "succeeded", "{report:#}");
    assert_eq!(exec["counts"]["failed"], 1, "{report:#}");
    assert_eq!(exec["counts"]["succeeded"], 1, "{report:#}");
    assert_eq!(exec["message"], "1 instance(s) failed");
    let outputs = report["outputs"].as_array().unwrap();
    let exec_output = |name: &str| {
        outputs
            .iter()
            .find(|l| l["instance_name"] == name && l["step"] == "exec")
            .unwrap_or_else(|| panic!("no output of {name}: {report:#}"))
            .clone()
    };
    assert_eq!(exec_output("web-1")["exit_code"], 1);
    assert_eq!(exec_output("web-1")["state"], "failed");
    assert_eq!(exec_output("web-1")["output"], "checked\n");
    assert_eq!(exec_output("web-2")["exit_code"], 0);
    assert_eq!(exec_output("web-2")["output"], "checked\n");
    assert!(run.stderr.contains("1/2 instance(s) succeeded"), "{run:#?}");
    let second = exec["id"].as_str().unwrap().to_owned();

    // list, show and logs.
    let list = fleet.json(&["exec", "list", "--app", "web", "--group", "prod"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.as_str(), first.as_str()]);
    let table = fleet.run(&["exec", "list"]).ok().stdout;
    assert!(
        table.contains(&second) && table.contains("sh -c"),
        "{table}"
    );
    let show = fleet.run(&["exec", "show", &second]).ok().stdout;
    assert!(show.contains("web-1") && show.contains("failed"), "{show}");
    assert!(show.contains("checked;"), "the script is shown: {show}");
    let logs = fleet.run(&["exec", "logs", &second]).ok().stdout;
    assert!(
        logs.contains("== web-1 (") && logs.contains("failed, exit 1"),
        "{logs}"
    );
    assert_eq!(logs.matches("checked\n").count(), 2, "{logs}");
    let one = fleet.json(&["exec", "logs", &second, "--instance", "web-2"]);
    assert!(
        one.as_array()
            .unwrap()
            .iter()
            .all(|l| l["instance_name"] == "web-2"),
        "{one:#}"
    );
    // Execs are not releases, and the group's deployment did not change.
    assert_eq!(fleet.json(&["release", "list"]), serde_json::json!([]));
    let group = fleet.json(&["group", "show", "web", "prod"]);
    assert_eq!(group["current_deployment"], Value::Null, "{group:#}");

    // Without a script or a command it is a usage error.
    fleet.run(&["group", "exec", "web", "prod"]).code(2);
}

#[test]
fn a_docker_image_release_to_an_agent_without_docker_fails_its_pull_at_once() {
    // The test agents are pointed at a Docker socket that does not exist; their
    // heartbeats say so, and `instance show` shows it.
    let fleet = Fleet::start(&["web-1"]);
    let started = Instant::now();
    let shown = loop {
        let shown = fleet.json(&["instance", "show", "web-1"]);
        if !shown["docker_error"].is_null() {
            break shown;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no Docker status reported: {shown:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(shown["docker_version"], Value::Null, "{shown:#}");
    let error = shown["docker_error"].as_str().unwrap();
    assert!(error.contains("Docker Engine not reachable"), "{error}");
    let table = fleet.run(&["instance", "show", "web-1"]).ok().stdout;
    assert!(
        table.contains("Docker") && table.contains("none: Docker Engine not reachable"),
        "{table}"
    );
    let list = fleet.run(&["instance", "list"]).ok().stdout;
    assert!(list.contains("DOCKER") && list.contains("none"), "{list}");
    fleet
        .run(&["registry", "create", "hub", "--endpoint", "127.0.0.1:5000"])
        .ok();
    let start = fleet.dir.path().join("start.sh");
    fs::write(&start, "docker run -d shop/web\n").unwrap();
    fleet
        .run(&[
            "deployment",
            "create",
            "web",
            "v1",
            "--type",
            "docker-image",
            "--registry",
            "hub",
            "--namespace",
            "shop",
            "--repository",
            "web",
            "--tag",
            "v1",
            "--workdir",
            fleet.dir.path().join("work").to_str().unwrap(),
            "--start-script",
            start.to_str().unwrap(),
            "--stop-script",
            start.to_str().unwrap(),
        ])
        .ok();
    let started = Instant::now();
    let run = fleet
        .run(&["release", "create", "web", "prod", "--deployment", "v1"])
        .code(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let id = release_id(&run.stdout);
    let release = fleet.json(&["release", "show", &id]);
    let instance = &release["batches"][0]["instances"][0];
    let pull = instance["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pull")
        .unwrap_or_else(|| panic!("no pull step: {release:#}"));
    assert_eq!(pull["state"], "failed", "{release:#}");
    let message = pull["message"].as_str().unwrap();
    for fragment in [
        "Docker Engine not reachable",
        "is docker running?",
        "wharf group exec web prod --script scripts/prepare-host.sh",
    ] {
        assert!(message.contains(fragment), "{fragment:?}: {message}");
    }
}

#[test]
fn group_exec_runs_as_another_user_when_the_agent_is_root() {
    let fleet = Fleet::start(&["web-1"]);
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let run = fleet.cli.run(&[
        "--output",
        "json",
        "group",
        "exec",
        "web",
        "prod",
        "--as-user",
        "nobody",
        "--",
        "id",
        "-un",
    ]);
    let report = run.json();
    let output = &report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["step"] == "exec")
        .unwrap_or_else(|| panic!("no exec output: {report:#}"))
        .clone();
    if root {
        assert_eq!(run.code, 0, "{run:#?}");
        assert_eq!(report["exec"]["as_user"], "nobody");
        assert!(
            output["output"].as_str().unwrap().starts_with("nobody\n"),
            "{output:#}"
        );
    } else {
        // Only an agent running as root can switch users; it says so.
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(
            output["message"]
                .as_str()
                .unwrap_or("")
                .contains("needs the agent to run as root"),
            "{output:#}"
        );
    }
}
