//! The real `wharf` binary against a real `wharf server`: every client command in
//! both output modes, exit codes, error messages, persistence across a restart, and
//! secrets that never reach an output or the server's log.

mod common;

use common::{register_instance, Cli, TestAgent, TestServer};
use serde_json::Value;
use std::fs;
use std::path::Path;

/// A server in its own temporary directory (data dir and log inside it).
struct Fixture {
    dir: tempfile::TempDir,
    server: TestServer,
}

impl Fixture {
    fn start(rust_log: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = TestServer::start(
            &dir.path().join("data"),
            &dir.path().join("server.log"),
            rust_log,
        );
        Fixture { dir, server }
    }

    /// A CLI that has run `wharf login` against this server.
    fn login(&self) -> Cli {
        let cli = Cli::new();
        let token = self.server.admin_token();
        cli.run(&["login", "--server", &self.server.url, "--token", &token])
            .ok();
        cli
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        fs::write(&path, text).expect("write a file");
        path.display().to_string()
    }
}

#[test]
fn usage_errors_exit_2() {
    let cli = Cli::new()
        .env("WHARF_SERVER", "http://127.0.0.1:9")
        .env("WHARF_TOKEN", "unused");
    let cases: &[&[&str]] = &[
        &["--bogus"],
        &["app", "list", "--bogus"],
        &["app", "create"],
        &["app", "frobnicate"],
        &["group", "show", "web"],
        &["group", "add-instances", "web", "prod"],
        &[
            "registry",
            "create",
            "hub",
            "--endpoint",
            "h:5000",
            "--username",
            "u",
        ],
        &[
            "registry",
            "create",
            "hub",
            "--endpoint",
            "h:5000",
            "--password-stdin",
        ],
        &[
            "registry",
            "create",
            "hub",
            "--endpoint",
            "h:5000",
            "--password",
            "x",
        ],
        &["instance", "token", "create", "--ttl", "soon"],
        &["instance", "token", "create", "--uses", "-1"],
        &["--output", "yaml", "app", "list"],
        &[
            "deployment",
            "create",
            "web",
            "v1",
            "--type",
            "tarball",
            "--workdir",
            "/srv",
            "--start-script",
            "a",
            "--stop-script",
            "b",
        ],
        &[
            "deployment",
            "create",
            "web",
            "v1",
            "--type",
            "command",
            "--workdir",
            "/srv",
            "--start-script",
            "a",
        ],
        &[
            "deployment",
            "create",
            "web",
            "v1",
            "--type",
            "command",
            "--workdir",
            "/srv",
            "--start-script",
            "a",
            "--stop-script",
            "b",
            "--verify-expect",
            "hi",
        ],
        &[
            "deployment",
            "create",
            "web",
            "v1",
            "--type",
            "command",
            "--workdir",
            "/srv",
            "--start-script",
            "a",
            "--stop-script",
            "b",
            "--step-timeout",
            "1500ms",
        ],
    ];
    for args in cases {
        let run = cli.run(args).code(2);
        assert!(run.stderr.contains("error"), "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
    }

    // Checks of the CLI's own, past what clap sees, also exit 2 and name the flags.
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v1",
        "--type",
        "docker-image",
        "--workdir",
        "/srv",
        "--start-script",
        "a",
        "--stop-script",
        "b",
        "--registry",
        "hub",
    ])
    .code(2)
    .error_mentions(&["--namespace", "--repository", "--tag"]);
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v1",
        "--type",
        "command",
        "--workdir",
        "/srv",
        "--start-script",
        "a",
        "--stop-script",
        "b",
        "--tag",
        "1",
    ])
    .code(2)
    .error_mentions(&["--tag"]);
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v1",
        "--type",
        "command",
        "--workdir",
        "/srv",
        "--start-script",
        "-",
        "--stop-script",
        "-",
    ])
    .code(2)
    .error_mentions(&["standard input"]);
    cli.run_stdin(
        &[
            "registry",
            "create",
            "hub",
            "--endpoint",
            "h:5000",
            "--username",
            "u",
            "--password-stdin",
        ],
        "\n",
    )
    .code(2)
    .error_mentions(&["no password"]);
    cli.run(&["app", "show", ".."])
        .code(2)
        .error_mentions(&["\"..\""]);
    cli.run(&["--server", "localhost:7700", "app", "list"])
        .code(2)
        .error_mentions(&["http://"]);
}

#[test]
fn help_and_version_exit_0() {
    let cli = Cli::new().env("WHARF_TOKEN", "do-not-show-me");
    let run = cli.run(&["--help"]).ok();
    assert!(run.stdout.contains("Exit codes"), "{run:#?}");
    assert!(!run.stdout.contains("do-not-show-me"), "{run:#?}");
    cli.run(&["--version"]).ok();
    cli.run(&["deployment", "create", "--help"]).ok();
}

#[test]
fn missing_configuration_says_to_log_in() {
    let cli = Cli::new();
    cli.run(&["app", "list"]).code(2).error_mentions(&[
        "wharf login",
        "WHARF_SERVER",
        "WHARF_TOKEN",
    ]);
    cli.run(&["--server", "http://127.0.0.1:9", "app", "list"])
        .code(2)
        .error_mentions(&["WHARF_TOKEN"]);
    cli.run(&["login", "--server", "http://127.0.0.1:9"])
        .code(2)
        .error_mentions(&["--token"]);
    assert!(!cli.config_file().exists());
}

#[test]
fn an_unreachable_server_exits_1() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let cli = Cli::new();
    cli.run(&["--server", &url, "--token", "t", "app", "list"])
        .code(1)
        .error_mentions(&["cannot reach", &url]);
    cli.run(&["login", "--server", &url, "--token", "t"])
        .code(1)
        .error_mentions(&["cannot reach"]);
    assert!(!cli.config_file().exists());
}

#[test]
fn a_bad_or_unreachable_database_stops_the_server_with_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().expect("a UTF-8 path");
    let server = ["server", "--listen", "127.0.0.1:0", "--data-dir", data_dir];
    let bad_url = "postgres://wharf:hunter2@db:notaport/wharf";
    let run = Cli::new()
        .run(&[&server[..], &["--database", bad_url]].concat())
        .code(1)
        .error_mentions(&["cannot open the PostgreSQL database", "port"]);
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    // Nothing listens on a port just freed; the URL comes from the environment.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let unreachable = format!("postgres://wharf:hunter2@127.0.0.1:{port}/wharf");
    let run = Cli::new()
        .env("WHARF_DATABASE_URL", &unreachable)
        .run(&server)
        .code(1)
        .error_mentions(&["cannot open the PostgreSQL database", "error connecting"]);
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
}

#[test]
fn login_checks_the_token_and_saves_a_private_file() {
    let f = Fixture::start("info");
    let cli = Cli::new();
    cli.run(&["login", "--server", &f.server.url, "--token", "wrong-token"])
        .code(1)
        .error_mentions(&["HTTP 401"]);
    assert!(!cli.config_file().exists());

    let token = f.server.admin_token();
    let run = cli
        .run(&[
            "login",
            "--server",
            &format!("{}/", f.server.url),
            "--token",
            &token,
        ])
        .ok();
    assert!(run.stdout.contains(&f.server.url), "{run:#?}");
    assert!(!run.stdout.contains(&token) && !run.stderr.contains(&token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cli.config_file()), 0o600);
        assert_eq!(mode(cli.config_file().parent().unwrap()), 0o700);
    }
    let saved: Value =
        serde_json::from_str(&fs::read_to_string(cli.config_file()).unwrap()).unwrap();
    assert_eq!(saved["server"], f.server.url.as_str());

    // The saved login now serves every command; flags and variables still win.
    cli.run(&["app", "list"]).ok();
    cli.run(&["--token", "wrong-token", "app", "list"])
        .code(1)
        .error_mentions(&["HTTP 401"]);
    let with_env = Cli::new()
        .env("WHARF_SERVER", &f.server.url)
        .env("WHARF_TOKEN", &token);
    let run = with_env.run(&["-o", "json", "login"]).ok();
    assert_eq!(run.json()["server"], f.server.url.as_str());

    // The saved token is not sent to a server named by --server alone.
    cli.run(&["--server", "http://127.0.0.1:9", "app", "list"])
        .code(2)
        .error_mentions(&["saved login is for"]);
}

#[test]
fn every_command_in_both_output_modes() {
    let f = Fixture::start("info");
    let cli = f.login();
    let json = |args: &[&str]| {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        cli.run(&all).ok().json()
    };

    // Applications.
    let run = cli
        .run(&["app", "create", "web", "--description", "The web site"])
        .ok();
    assert!(
        run.stdout.contains("Name:") && run.stdout.contains("The web site"),
        "{run:#?}"
    );
    let api = json(&["app", "create", "api"]);
    assert_eq!(api["name"], "api");
    let run = cli.run(&["app", "list"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{run:#?}");
    assert_eq!(lines.len(), 3, "{run:#?}");
    assert_eq!(json(&["app", "list"]).as_array().unwrap().len(), 2);
    assert!(cli
        .run(&["app", "show", "web"])
        .ok()
        .stdout
        .contains("The web site"));
    assert_eq!(json(&["app", "show", "web"])["description"], "The web site");

    // Registration tokens: the table mode prints the token alone on stdout.
    let run = cli
        .run(&["instance", "token", "create", "--ttl", "1h", "--uses", "2"])
        .ok();
    let token = run.stdout.trim_end_matches('\n');
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{run:#?}"
    );
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    assert!(run.stderr.contains("expires"), "{run:#?}");
    let created = json(&["instance", "token", "create"]);
    assert!(created["token"].is_string(), "{created}");
    assert_eq!(created["uses"], 1);
    let tokens = json(&["instance", "token", "list"]);
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    assert!(tokens
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t.get("token").is_none()));
    let run = cli.run(&["instance", "token", "list"]).ok();
    assert!(
        run.stdout.contains(created["id"].as_str().unwrap()),
        "{run:#?}"
    );
    assert!(!run.stdout.contains(token), "{run:#?}");

    // Instances, registered through the agent API with the first token. The second
    // has a right-to-left override in its host name, which must reach the terminal
    // escaped.
    let id1 = register_instance(&f.server.url, token, "web-1", "host-1");
    let id2 = register_instance(&f.server.url, token, "web-2", "host\u{202E}2");
    let run = cli.run(&["instance", "list"]).ok();
    assert!(
        run.stdout.contains("web-1") && run.stdout.contains(&id2),
        "{run:#?}"
    );
    assert_eq!(json(&["instance", "list"]).as_array().unwrap().len(), 2);
    let run = cli.run(&["instance", "show", "web-1"]).ok();
    assert!(
        run.stdout.contains(&id1) && run.stdout.contains("zone=a"),
        "{run:#?}"
    );
    assert_eq!(json(&["instance", "show", &id1])["name"], "web-1");
    let run = cli.run(&["instance", "show", "web-2"]).ok();
    assert!(run.stdout.contains("host\\u{202e}2"), "{run:#?}");
    assert!(!run.stdout.contains('\u{202E}'), "{run:#?}");
    assert_eq!(
        json(&["instance", "show", "web-2"])["hostname"],
        "host\u{202E}2"
    );

    // Groups.
    let run = cli.run(&["group", "create", "web", "prod"]).ok();
    assert!(run.stdout.contains("prod"), "{run:#?}");
    assert_eq!(
        json(&["group", "create", "web", "staging"])["name"],
        "staging"
    );
    assert!(cli
        .run(&["group", "list", "web"])
        .ok()
        .stdout
        .contains("staging"));
    assert_eq!(json(&["group", "list", "web"]).as_array().unwrap().len(), 2);
    let run = cli
        .run(&["group", "add-instances", "web", "prod", "web-1", &id2])
        .ok();
    assert!(
        run.stdout.contains("web-1") && run.stdout.contains("web-2"),
        "{run:#?}"
    );
    let staging = json(&["group", "add-instances", "web", "staging", "web-2"]);
    assert_eq!(staging["instances"].as_array().unwrap().len(), 1);
    let run = cli.run(&["group", "show", "web", "prod"]).ok();
    assert!(run.stdout.contains(&id1), "{run:#?}");
    assert_eq!(
        json(&["group", "show", "web", "prod"])["instances"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let prod = json(&["group", "remove-instances", "web", "prod", "web-2"]);
    assert_eq!(prod["instances"].as_array().unwrap().len(), 1);
    let run = cli
        .run(&["group", "remove-instances", "web", "staging", &id2])
        .ok();
    assert!(run.stdout.contains("Instances:"), "{run:#?}");

    // Registries; the password goes in on stdin and never comes back.
    let run = cli
        .run(&["registry", "create", "hub", "--endpoint", "127.0.0.1:5000"])
        .ok();
    assert!(run.stdout.contains("127.0.0.1:5000"), "{run:#?}");
    let private = cli
        .run_stdin(
            &[
                "-o",
                "json",
                "registry",
                "create",
                "private",
                "--endpoint",
                "registry.example.com:5000",
                "--private-endpoint",
                "10.0.0.5:5000",
                "--username",
                "bob",
                "--password-stdin",
                "--insecure",
            ],
            "pw-123\n",
        )
        .ok()
        .json();
    assert_eq!(private["has_password"], true);
    assert_eq!(private["insecure"], true);
    assert!(private.get("password").is_none());
    assert!(cli
        .run(&["registry", "list"])
        .ok()
        .stdout
        .contains("10.0.0.5:5000"));
    assert_eq!(json(&["registry", "list"]).as_array().unwrap().len(), 2);
    assert!(cli
        .run(&["registry", "show", "private"])
        .ok()
        .stdout
        .contains("bob"));
    assert_eq!(json(&["registry", "show", "hub"])["has_password"], false);

    // Deployments: scripts from files and from stdin.
    let start = f.file(
        "start.sh",
        "#!/bin/bash\ndocker run -d --name web \"$WHARF_IMAGE\"\n",
    );
    let stop = f.file("stop.sh", "docker rm -f web || true\n");
    let run = cli
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
            "team",
            "--repository",
            "web",
            "--tag",
            "1.0",
            "--workdir",
            "/srv/web",
            "--start-script",
            &start,
            "--stop-script",
            &stop,
            "--verify-url",
            "http://127.0.0.1:8080/hello",
            "--verify-expect",
            "hello",
            "--verify-status",
            "200",
            "--step-timeout",
            "2m",
            "--pull-timeout",
            "10m",
            "--verify-timeout",
            "30s",
        ])
        .ok();
    assert!(
        run.stdout
            .starts_with("Registry address: 127.0.0.1:5000/team/web:1.0\n"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("docker run -d --name web"), "{run:#?}");
    let v2 = cli
        .run_stdin(
            &[
                "-o",
                "json",
                "deployment",
                "create",
                "web",
                "v2",
                "--type",
                "command",
                "--workdir",
                "/srv/cmd",
                "--start-script",
                "-",
                "--stop-script",
                &stop,
                "--step-timeout",
                "90s",
            ],
            "echo from stdin\n",
        )
        .ok()
        .json();
    assert_eq!(v2["type"], "command");
    assert_eq!(v2["start_script"], "echo from stdin\n");
    assert_eq!(v2["timeouts"]["script_secs"], 90);
    assert!(v2["registry_address"].is_null());
    let run = cli.run(&["deployment", "list", "web"]).ok();
    assert!(run.stdout.contains("127.0.0.1:5000/team/web:1.0") && run.stdout.contains("v2"));
    assert_eq!(
        json(&["deployment", "list", "web"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let run = cli.run(&["deployment", "show", "web", "v1"]).ok();
    assert!(run
        .stdout
        .starts_with("Registry address: 127.0.0.1:5000/team/web:1.0"));
    assert!(
        run.stdout.contains("pull 600s, scripts 120s, verify 30s"),
        "{run:#?}"
    );
    let v1 = json(&["deployment", "show", "web", "v1"]);
    assert_eq!(v1["registry_address"], "127.0.0.1:5000/team/web:1.0");
    assert_eq!(v1["verify"]["expect_body"], "hello");

    // Deletes, in both modes, leave nothing behind.
    let run = cli.run(&["deployment", "delete", "web", "v2"]).ok();
    assert!(run.stdout.contains("Deleted deployment v2"), "{run:#?}");
    assert_eq!(
        json(&["deployment", "delete", "web", "v1"]),
        serde_json::json!({"app": "web", "deleted": "v1"})
    );
    assert_eq!(
        json(&["group", "delete", "web", "staging"]),
        serde_json::json!({"app": "web", "deleted": "staging"})
    );
    // A group with members is in use; empty it first.
    cli.run(&["group", "delete", "web", "prod"])
        .code(1)
        .error_mentions(&["in_use"]);
    cli.run(&["group", "remove-instances", "web", "prod", "web-1"])
        .ok();
    cli.run(&["group", "delete", "web", "prod"]).ok();
    assert_eq!(
        json(&["registry", "delete", "private"]),
        serde_json::json!({"deleted": "private"})
    );
    cli.run(&["registry", "delete", "hub"]).ok();
    let token_ids: Vec<String> = json(&["instance", "token", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    cli.run(&["instance", "token", "delete", &token_ids[0]])
        .ok();
    assert_eq!(
        json(&["instance", "token", "delete", &token_ids[1]]),
        serde_json::json!({"deleted": token_ids[1]})
    );
    assert!(cli
        .run(&["instance", "delete", "web-1"])
        .ok()
        .stdout
        .contains("Deleted"));
    assert_eq!(
        json(&["instance", "delete", &id2]),
        serde_json::json!({"deleted": id2})
    );
    cli.run(&["app", "delete", "api"]).ok();
    assert_eq!(
        json(&["app", "delete", "web"]),
        serde_json::json!({"deleted": "web"})
    );
    for what in [
        &["app", "list"][..],
        &["registry", "list"],
        &["instance", "list"],
        &["instance", "token", "list"],
    ] {
        assert_eq!(json(what), serde_json::json!([]), "{what:?}");
    }
    // An empty list in table mode is just the header.
    assert_eq!(cli.run(&["app", "list"]).ok().stdout.lines().count(), 1);
}

#[test]
fn api_errors_exit_1_naming_the_field() {
    let f = Fixture::start("info");
    let cli = f.login();
    cli.run(&["app", "create", "web"]).ok();
    cli.run(&["registry", "create", "hub", "--endpoint", "127.0.0.1:5000"])
        .ok();
    let start = f.file("start.sh", "echo start\n");
    let stop = f.file("stop.sh", "");

    cli.run(&["app", "create", "web"]).code(1).error_mentions(&[
        "already",
        "code: already_exists",
        "HTTP 409",
    ]);
    cli.run(&["app", "create", "Bad Name"])
        .code(1)
        .error_mentions(&["field: name", "HTTP 400"]);
    cli.run(&["app", "show", "nope"])
        .code(1)
        .error_mentions(&["not_found", "HTTP 404"]);
    // A slash in a name stays inside the path segment: still a lookup of one app.
    cli.run(&["app", "show", "web/groups"])
        .code(1)
        .error_mentions(&["not_found"]);
    cli.run(&["-o", "json", "group", "create", "nope", "prod"])
        .code(1)
        .error_mentions(&["HTTP 404"]);
    cli.run(&["group", "create", "web", "prod"]).ok();
    cli.run(&["group", "add-instances", "web", "prod", "no-such-host"])
        .code(1)
        .error_mentions(&["field: instances", "no-such-host"]);
    cli.run(&[
        "registry",
        "create",
        "bad",
        "--endpoint",
        "https://registry.example.com",
    ])
    .code(1)
    .error_mentions(&["field: endpoint"]);

    let deployment = |name: &str, registry: &str, workdir: &str| {
        cli.run(&[
            "deployment",
            "create",
            "web",
            name,
            "--type",
            "docker-image",
            "--registry",
            registry,
            "--namespace",
            "team",
            "--repository",
            "web",
            "--tag",
            "1.0",
            "--workdir",
            workdir,
            "--start-script",
            &start,
            "--stop-script",
            &stop,
        ])
    };
    deployment("v1", "no-such-registry", "/srv/web")
        .code(1)
        .error_mentions(&["field: registry"]);
    deployment("v1", "hub", "srv/web")
        .code(1)
        .error_mentions(&["field: workdir"]);
    deployment("v1", "hub", "/srv/../etc")
        .code(1)
        .error_mentions(&["field: workdir"]);
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v1",
        "--type",
        "docker-image",
        "--registry",
        "hub",
        "--namespace",
        "Team",
        "--repository",
        "web",
        "--tag",
        "1.0",
        "--workdir",
        "/srv",
        "--start-script",
        &start,
        "--stop-script",
        &stop,
    ])
    .code(1)
    .error_mentions(&["field: namespace"]);
    deployment("v1", "hub", "/srv/web").ok();
    deployment("v1", "hub", "/srv/web")
        .code(1)
        .error_mentions(&["HTTP 409"]);

    // Script files: missing, too large, not text.
    let missing = f.dir.path().join("missing.sh").display().to_string();
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v2",
        "--type",
        "command",
        "--workdir",
        "/srv",
        "--start-script",
        &missing,
        "--stop-script",
        &stop,
    ])
    .code(1)
    .error_mentions(&["start script", "missing.sh"]);
    let big = f.file("big.sh", &"#".repeat(64 * 1024 + 1));
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v2",
        "--type",
        "command",
        "--workdir",
        "/srv",
        "--start-script",
        &start,
        "--stop-script",
        &big,
    ])
    .code(1)
    .error_mentions(&["stop script", "big.sh", "64 KiB"]);
    let dir = f.dir.path().display().to_string();
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v2",
        "--type",
        "command",
        "--workdir",
        "/srv",
        "--start-script",
        &dir,
        "--stop-script",
        &stop,
    ])
    .code(1)
    .error_mentions(&["start script"]);

    // Nothing refused was stored.
    let apps = cli.run(&["-o", "json", "app", "list"]).ok().json();
    assert_eq!(apps.as_array().unwrap().len(), 1);
    let deployments = cli
        .run(&["-o", "json", "deployment", "list", "web"])
        .ok()
        .json();
    assert_eq!(deployments.as_array().unwrap().len(), 1);
}

#[test]
fn a_restarted_server_keeps_everything() {
    let mut f = Fixture::start("info");
    let cli = f.login();
    let admin_token = f.server.admin_token();
    cli.run(&["app", "create", "web", "--description", "kept"])
        .ok();
    cli.run(&["group", "create", "web", "prod"]).ok();
    cli.run_stdin(
        &[
            "registry",
            "create",
            "hub",
            "--endpoint",
            "127.0.0.1:5000",
            "--username",
            "u",
            "--password-stdin",
        ],
        "pw\n",
    )
    .ok();
    let start = f.file("start.sh", "echo start\n");
    cli.run(&[
        "deployment",
        "create",
        "web",
        "v1",
        "--type",
        "docker-image",
        "--registry",
        "hub",
        "--namespace",
        "team",
        "--repository",
        "web",
        "--tag",
        "1.0",
        "--workdir",
        "/srv/web",
        "--start-script",
        &start,
        "--stop-script",
        &start,
    ])
    .ok();
    let token = cli.run(&["instance", "token", "create"]).ok().stdout;
    register_instance(&f.server.url, token.trim(), "web-1", "host-1");

    let status = f.server.stop();
    assert!(
        status.success(),
        "SIGTERM should stop the server cleanly: {status:?}"
    );
    assert!(
        f.server.log().contains("shutting down"),
        "{}",
        f.server.log()
    );

    let server = TestServer::start(&f.server.data_dir, &f.server.log_path, "info");
    assert_eq!(server.admin_token(), admin_token, "the admin token is kept");
    assert_eq!(
        server.log().matches("Created an admin token").count(),
        1,
        "only the first start creates a token: {}",
        server.log()
    );
    let cli = Cli::new()
        .env("WHARF_SERVER", &server.url)
        .env("WHARF_TOKEN", &admin_token);
    let json = |args: &[&str]| {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        cli.run(&all).ok().json()
    };
    assert_eq!(json(&["app", "show", "web"])["description"], "kept");
    assert_eq!(json(&["group", "show", "web", "prod"])["name"], "prod");
    assert_eq!(json(&["registry", "show", "hub"])["has_password"], true);
    assert_eq!(
        json(&["deployment", "show", "web", "v1"])["registry_address"],
        "127.0.0.1:5000/team/web:1.0"
    );
    assert_eq!(json(&["instance", "show", "web-1"])["hostname"], "host-1");
    // The registration token was single-use and was used: it is still recorded so.
    assert_eq!(json(&["instance", "token", "list"])[0]["uses_left"], 0);
}

#[test]
fn secrets_never_appear_in_outputs_or_the_server_log() {
    const PASSWORD: &str = "s3cr?t>pa/ss+w=rd \"q\"";
    // Debug logging makes the check stricter: more of the server's work is logged.
    let mut f = Fixture::start("debug");
    let admin_token = f.server.admin_token();
    let cli = f.login();

    let created = cli.run(&["instance", "token", "create"]).ok();
    let registration_token = created.stdout.trim().to_owned();
    let created_json = cli.run(&["-o", "json", "instance", "token", "create"]).ok();
    let second_token = created_json.json()["token"].as_str().unwrap().to_owned();
    register_instance(&f.server.url, &registration_token, "web-1", "host-1");
    register_instance(&f.server.url, &second_token, "web-2", "host-2");

    cli.run(&["app", "create", "web"]).ok();
    cli.run(&["group", "create", "web", "prod"]).ok();
    cli.run(&["group", "add-instances", "web", "prod", "web-1", "web-2"])
        .ok();
    for output in ["table", "json"] {
        let name = format!("hub-{output}");
        cli.run_stdin(
            &[
                "-o",
                output,
                "registry",
                "create",
                &name,
                "--endpoint",
                "127.0.0.1:5000",
                "--username",
                "robot",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .ok();
        cli.run(&["-o", output, "registry", "show", &name]).ok();
        cli.run(&["-o", output, "registry", "list"]).ok();
    }
    // A refused registry with a password: the error must not echo it either.
    cli.run_stdin(
        &[
            "registry",
            "create",
            "hub-table",
            "--endpoint",
            "127.0.0.1:5000",
            "--username",
            "robot",
            "--password-stdin",
        ],
        PASSWORD,
    )
    .code(1);
    cli.run_stdin(
        &[
            "registry",
            "create",
            "bad",
            "--endpoint",
            "http://x",
            "--username",
            "robot",
            "--password-stdin",
        ],
        PASSWORD,
    )
    .code(1);
    let start = f.file("start.sh", "echo start\n");
    for output in ["table", "json"] {
        cli.run(&[
            "-o",
            output,
            "deployment",
            "create",
            "web",
            &format!("v-{output}"),
            "--type",
            "docker-image",
            "--registry",
            "hub-table",
            "--namespace",
            "team",
            "--repository",
            "web",
            "--tag",
            "1.0",
            "--workdir",
            "/srv/web",
            "--start-script",
            &start,
            "--stop-script",
            &start,
        ])
        .ok();
        cli.run(&[
            "-o",
            output,
            "deployment",
            "show",
            "web",
            &format!("v-{output}"),
        ])
        .ok();
        cli.run(&["-o", output, "group", "show", "web", "prod"])
            .ok();
        cli.run(&["-o", output, "instance", "list"]).ok();
        cli.run(&["-o", output, "instance", "token", "list"]).ok();
        cli.run(&["-o", output, "app", "list"]).ok();
    }
    cli.run(&["--token", "not-the-token", "app", "list"])
        .code(1);
    assert!(f.server.stop().success());

    let secrets = [
        ("registry password", "s3cr?t>pa"),
        ("admin token", admin_token.as_str()),
        ("registration token", registration_token.as_str()),
        ("second registration token", second_token.as_str()),
    ];
    let history = cli.history.lock().unwrap();
    assert!(history.len() > 25, "{}", history.len());
    for run in history.iter() {
        // Printing a new registration token is what `instance token create` is for.
        let stdout =
            if run.args.iter().any(|a| a == "token") && run.args.iter().any(|a| a == "create") {
                ""
            } else {
                run.stdout.as_str()
            };
        for (what, secret) in secrets {
            assert!(
                !stdout.contains(secret) && !run.stderr.contains(secret),
                "the {what} appears in the output of {:?}",
                run.args
            );
        }
    }
    let log = f.server.log();
    assert!(
        log.contains("DEBUG") || log.contains("INFO"),
        "no log to search: {log}"
    );
    for (what, secret) in secrets {
        assert!(
            !log.contains(secret),
            "the {what} appears in the server log"
        );
    }
}

#[test]
fn scaling_group_commands_create_show_list_and_delete() {
    let f = Fixture::start("info");
    let cli = f.login();
    cli.run(&["app", "create", "web"]).ok();
    cli.run(&["group", "create", "web", "prod"]).ok();

    let created = cli
        .run(&[
            "scaling-group",
            "create",
            "asg",
            "--app",
            "web",
            "--group",
            "prod",
            "--on-suspend",
            "echo suspend",
            "--on-resume",
            "echo resume",
        ])
        .ok();
    for fragment in [
        "asg",
        "web",
        "prod",
        "active",
        "echo suspend",
        "echo resume",
    ] {
        assert!(
            created.stdout.contains(fragment),
            "{fragment}: {created:#?}"
        );
    }
    let shown = cli
        .run(&["-o", "json", "scaling-group", "show", "asg"])
        .ok();
    let shown = shown.json();
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["group"], "prod");
    assert_eq!(shown["on_resume"], "echo resume");
    assert_eq!(shown["pending"], serde_json::json!([]));
    let listed = cli.run(&["scaling-group", "list"]).ok();
    assert!(listed.stdout.contains("NAME") && listed.stdout.contains("asg"));
    let listed = cli
        .run(&["-o", "json", "scaling-group", "list"])
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    cli.run(&[
        "scaling-group",
        "create",
        "asg",
        "--app",
        "web",
        "--group",
        "prod",
    ])
    .code(1)
    .error_mentions(&["already", "HTTP 409"]);
    cli.run(&[
        "scaling-group",
        "create",
        "x",
        "--app",
        "nope",
        "--group",
        "prod",
    ])
    .code(1)
    .error_mentions(&["field: app", "nope", "HTTP 400"]);
    cli.run(&[
        "scaling-group",
        "create",
        "x",
        "--app",
        "web",
        "--group",
        "nope",
    ])
    .code(1)
    .error_mentions(&["field: group", "nope", "HTTP 400"]);
    cli.run(&[
        "scaling-group",
        "create",
        "Bad Name",
        "--app",
        "web",
        "--group",
        "prod",
    ])
    .code(1)
    .error_mentions(&["field: name", "HTTP 400"]);
    cli.run(&["scaling-group", "show", "nope"])
        .code(1)
        .error_mentions(&["not_found", "HTTP 404"]);

    let deleted = cli.run(&["scaling-group", "delete", "asg"]).ok();
    assert!(deleted.stdout.contains("Deleted scaling group asg"));
    cli.run(&["scaling-group", "delete", "asg"])
        .code(1)
        .error_mentions(&["not_found", "HTTP 404"]);
    let listed = cli
        .run(&["-o", "json", "scaling-group", "list"])
        .ok()
        .json();
    assert_eq!(listed, serde_json::json!([]));
}

#[test]
fn an_agent_joins_its_scaling_group_and_deregisters_on_shutdown() {
    let f = Fixture::start("info");
    let cli = f.login();
    cli.run(&["app", "create", "web"]).ok();
    cli.run(&["group", "create", "web", "prod"]).ok();
    cli.run(&[
        "scaling-group",
        "create",
        "asg",
        "--app",
        "web",
        "--group",
        "prod",
    ])
    .ok();
    let run = cli.run(&["instance", "token", "create"]).ok();
    let token = run.stdout.trim_end_matches('\n').to_owned();
    let state_dir = f.dir.path().join("agent-state");
    let mut agent = TestAgent::start_with_args(
        &f.server.url,
        &token,
        "sg-host",
        &state_dir,
        &state_dir.with_extension("no-docker.sock"),
        &["--scaling-group", "asg", "--deregister"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let group = cli
            .run(&["-o", "json", "group", "show", "web", "prod"])
            .ok();
        if group.json()["instances"][0]["name"] == "sg-host" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never joined: {}",
            agent.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(agent.stop().success(), "{}", agent.log());

    let instances = cli.run(&["-o", "json", "instance", "list"]).ok().json();
    assert_eq!(instances, serde_json::json!([]), "deregistered on shutdown");
    assert!(!state_dir.join("state.json").exists());
    let sg = cli
        .run(&["-o", "json", "scaling-group", "show", "asg"])
        .ok()
        .json();
    let kinds: Vec<&str> = sg["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["join", "leave"]);
    let shown = cli.run(&["scaling-group", "show", "asg"]).ok();
    assert!(shown.stdout.contains("Activities:") && shown.stdout.contains("leave"));
}
