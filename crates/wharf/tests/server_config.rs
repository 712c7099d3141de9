//! `wharf server`'s configuration through the real binary: the layering flag >
//! `WHARF_*` environment > `--config` file > default for every setting, what
//! `--print-config` prints, every bad input with its exit code and message, and the
//! log format.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_wharf");

/// The outcome of one run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `wharf ARGS` with only the `WHARF_*` variables in `env` (none inherited from the
/// machine running the tests) and `RUST_LOG` unset.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WHARF_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    command
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = command(args, env).output().expect("run wharf");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{run:#?}");
    run
}

/// `wharf server --print-config ARGS`, parsed; fails the test unless it exits 0.
fn printed(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut all = vec!["server", "--print-config"];
    all.extend_from_slice(args);
    let run = run(&all, env);
    assert_eq!(run.code, 0, "{run:#?}");
    toml::from_str(&run.stdout).unwrap_or_else(|err| panic!("not TOML ({err}): {run:#?}"))
}

fn get<'a>(table: &'a toml::Table, key: &str) -> &'a toml::Value {
    table
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing from {table:#?}"))
}

fn string(table: &toml::Table, key: &str) -> String {
    get(table, key)
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string"))
        .to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the file");
    path.display().to_string()
}

#[test]
fn defaults_apply_when_nothing_is_given() {
    let table = printed(&[], &[]);
    assert_eq!(string(&table, "listen"), "127.0.0.1:7700");
    assert_eq!(string(&table, "data-dir"), "wharf-data");
    assert_eq!(string(&table, "log-format"), "text");
    assert_eq!(string(&table, "log-level"), "info");
    assert_eq!(string(&table, "heartbeat-interval"), "10s");
    assert_eq!(string(&table, "offline-after"), "30s");
    assert_eq!(get(&table, "insecure-http").as_bool(), Some(false));
}

/// For each setting: the file beats the default, the variable beats the file, the
/// flag beats the variable.
#[test]
fn each_layer_overrides_the_one_below() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "server.toml",
        "listen = \"127.0.0.1:1001\"\n\
         data-dir = \"/file/data\"\n\
         log-format = \"json\"\n\
         log-level = \"warn\"\n\
         heartbeat-interval = \"2s\"\n\
         offline-after = \"20s\"\n\
         insecure-http = true\n",
    );
    // (key, WHARF_* variable, its value, flag, the flag's value, expected from each
    // layer: file, variable, flag)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, [&'a str; 3]);
    let cases: &[Case] = &[
        (
            "listen",
            "WHARF_LISTEN",
            "127.0.0.1:1002",
            "--listen",
            "127.0.0.1:1003",
            ["127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"],
        ),
        (
            "data-dir",
            "WHARF_DATA_DIR",
            "/env/data",
            "--data-dir",
            "/flag/data",
            ["/file/data", "/env/data", "/flag/data"],
        ),
        (
            "log-format",
            "WHARF_LOG_FORMAT",
            "text",
            "--log-format",
            "json",
            ["json", "text", "json"],
        ),
        (
            "log-level",
            "WHARF_LOG_LEVEL",
            "debug",
            "--log-level",
            "error,wharf_server=trace",
            ["warn", "debug", "error,wharf_server=trace"],
        ),
        (
            "heartbeat-interval",
            "WHARF_HEARTBEAT_INTERVAL",
            "3s",
            "--heartbeat-interval",
            "4s",
            ["2s", "3s", "4s"],
        ),
        (
            "offline-after",
            "WHARF_OFFLINE_AFTER",
            "1m",
            "--offline-after",
            "1h",
            ["20s", "1m", "1h"],
        ),
    ];
    for (key, var, var_value, flag, flag_value, [from_file, from_env, from_flag]) in cases {
        let config = ["--config", file.as_str()];
        let table = printed(&config, &[]);
        assert_eq!(string(&table, key), *from_file, "{key} from the file");
        let env = [(*var, *var_value)];
        let table = printed(&config, &env);
        assert_eq!(string(&table, key), *from_env, "{key} from {var}");
        let flag_arg = format!("{flag}={flag_value}");
        let table = printed(&["--config", &file, &flag_arg], &env);
        assert_eq!(string(&table, key), *from_flag, "{key} from {flag}");
    }
    // The boolean: true in the file, turned off by the variable, on again by the flag.
    let config = ["--config", file.as_str()];
    let insecure = |table: &toml::Table| get(table, "insecure-http").as_bool();
    assert_eq!(insecure(&printed(&config, &[])), Some(true));
    let env = [("WHARF_INSECURE_HTTP", "0")];
    assert_eq!(insecure(&printed(&config, &env)), Some(false));
    let table = printed(&["--config", &file, "--insecure-http"], &env);
    assert_eq!(insecure(&table), Some(true));
    // Without a configured level, RUST_LOG (as before there was a configuration) is
    // what logging uses, and what is printed.
    let table = printed(&[], &[("RUST_LOG", "debug")]);
    assert_eq!(string(&table, "log-level"), "debug");
    let table = printed(&[], &[("RUST_LOG", "debug"), ("WHARF_LOG_LEVEL", "warn")]);
    assert_eq!(string(&table, "log-level"), "warn");
    // The file itself can come from WHARF_CONFIG.
    let table = printed(&[], &[("WHARF_CONFIG", &file)]);
    assert_eq!(string(&table, "data-dir"), "/file/data");
}

#[test]
fn printed_configuration_reads_back_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(
        &[
            "server",
            "--print-config",
            "--listen",
            "[::1]:0",
            "--data-dir",
            "/var/lib/wharf",
            "--log-level",
            "debug",
            "--offline-after",
            "1m 30s",
        ],
        &[("WHARF_LOG_FORMAT", "json")],
    );
    assert_eq!(first.code, 0, "{first:#?}");
    let file = write(dir.path(), "printed.toml", &first.stdout);
    let second = run(&["server", "--print-config", "--config", &file], &[]);
    assert_eq!(second.code, 0, "{second:#?}");
    assert_eq!(first.stdout, second.stdout);
    assert!(
        first.stdout.contains("offline-after = \"1m 30s\""),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("listen = \"[::1]:0\""),
        "{}",
        first.stdout
    );
}

/// Every bad file: exit 2, one `error:` line naming the file, where it can the line
/// and the key, and the problem.
#[test]
fn bad_configuration_files_exit_2_naming_the_file_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    // (file contents, what the message must also contain)
    let cases: &[(&str, &[&str])] = &[
        (
            "lisen = \"127.0.0.1:1\"\n",
            &["line 1", "unknown key `lisen`", "listen"],
        ),
        (
            "\n[acme]\ncert = \"x\"\n",
            &["line 2", "unknown key `acme`"],
        ),
        ("\ntls = \"manual\"\n", &["line 2", "key tls", "`auto`"]),
        (
            "listen = \"everywhere\"\n",
            &["line 1", "key listen", "invalid socket address"],
        ),
        ("listen = 7700\n", &["key listen", "invalid type: integer"]),
        (
            "log-format = \"xml\"\n",
            &["key log-format", "`xml`", "`text` or `json`"],
        ),
        (
            "log-level = \"\"\n",
            &["key log-level", "must not be empty"],
        ),
        (
            "log-level = \"info,[\"\n",
            &["key log-level", "not a log filter"],
        ),
        (
            "\n\nheartbeat-interval = \"soon\"\n",
            &["line 3", "key heartbeat-interval", "soon"],
        ),
        (
            "offline-after = \"1500ms\"\n",
            &["key offline-after", "whole number of seconds"],
        ),
        (
            "insecure-http = \"yes\"\n",
            &["key insecure-http", "invalid type: string"],
        ),
        (
            "listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n",
            &["line 2", "duplicate key"],
        ),
        ("data-dir = \"unterminated\n", &["line 1"]),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad-{index}.toml"), text);
        let run = run(&["server", "--print-config", "--config", &file], &[]);
        assert_eq!(run.code, 2, "{text:?}: {run:#?}");
        assert!(run.stdout.is_empty(), "{text:?}: {run:#?}");
        let line = run.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{text:?}: {run:#?}");
        assert!(
            line.starts_with(&format!("error: {file}")),
            "{text:?}: {line}"
        );
        for part in *expected {
            assert!(line.contains(part), "{text:?}: {part:?} not in {line}");
        }
    }
    // Settings that are each fine but do not fit together.
    let file = write(
        dir.path(),
        "timings.toml",
        "heartbeat-interval = \"30s\"\noffline-after = \"10s\"\n",
    );
    let run1 = run(&["server", "--print-config", "--config", &file], &[]);
    assert_eq!(run1.code, 2, "{run1:#?}");
    assert!(
        run1.stderr
            .contains("offline-after (10s) must be longer than heartbeat-interval (30s)"),
        "{run1:#?}"
    );
    // A file that is not there, or not a file.
    let missing = dir.path().join("missing.toml").display().to_string();
    let not_a_file = dir.path().display().to_string();
    for path in [missing, not_a_file] {
        let run = run(&["server", "--config", &path], &[]);
        assert_eq!(run.code, 2, "{run:#?}");
        assert!(
            run.stderr
                .contains(&format!("cannot read the configuration file {path}")),
            "{run:#?}"
        );
    }
}

#[test]
fn bad_flags_and_variables_exit_2_naming_the_setting() {
    // (flags, variables, the name the message must contain)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--listen", "nowhere"], &[], "--listen"),
        (&[], &[("WHARF_LISTEN", "nowhere")], "--listen"),
        (&[], &[("WHARF_LOG_FORMAT", "xml")], "--log-format"),
        (&["--log-level", "info,["], &[], "--log-level"),
        (&[], &[("WHARF_OFFLINE_AFTER", "soon")], "--offline-after"),
        (&[], &[("WHARF_INSECURE_HTTP", "maybe")], "--insecure-http"),
    ];
    for (args, env, name) in cases {
        let mut all = vec!["server", "--print-config"];
        all.extend_from_slice(args);
        let run = run(&all, env);
        assert_eq!(run.code, 2, "{args:?} {env:?}: {run:#?}");
        assert!(run.stderr.contains(name), "{args:?} {env:?}: {run:#?}");
    }
}

/// Starts `wharf server ARGS`, waits for the line announcing the address, stops it
/// with SIGTERM and returns (that line, stderr).
fn start_and_stop(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut child = command(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wharf server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let output = child.wait_with_output().expect("wait for the server");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let line = line
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the server announced no address; stderr:\n{stderr}"));
    (line, stderr)
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let (line, stderr) = start_and_stop(
        &["server", "--listen", "127.0.0.1:0", "--data-dir", &data],
        &[("WHARF_LOG_FORMAT", "json"), ("WHARF_LOG_LEVEL", "info")],
    );
    assert!(
        line.starts_with("wharf server listening on http://127.0.0.1:"),
        "{line}"
    );
    let mut logged = 0;
    for text in stderr.lines().filter(|l| l.starts_with('{')) {
        let value: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}"));
        assert!(value.get("level").is_some(), "{text}");
        logged += 1;
    }
    // At least the shutdown's lines: the signal and "server stopped".
    assert!(logged >= 2, "{stderr}");
    assert!(stderr.contains("server stopped"), "{stderr}");
}

#[test]
fn a_non_loopback_listen_needs_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let file = write(dir.path(), "server.toml", "listen = \"0.0.0.0:0\"\n");
    for (args, env) in [
        (
            vec!["server", "--listen", "0.0.0.0:0", "--data-dir", &data],
            vec![],
        ),
        (
            vec!["server", "--data-dir", &data],
            vec![("WHARF_LISTEN", "[::]:0")],
        ),
        (
            vec!["server", "--config", &file, "--data-dir", &data],
            vec![],
        ),
        (
            vec![
                "server",
                "--config",
                &file,
                "--data-dir",
                &data,
                "--insecure-http=false",
            ],
            vec![("WHARF_INSECURE_HTTP", "1")],
        ),
    ] {
        let run = run(&args, &env);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(run.stderr.contains("refusing to listen on"), "{run:#?}");
        assert!(run.stderr.contains("without TLS"), "{run:#?}");
        assert!(run.stderr.contains("--insecure-http"), "{run:#?}");
        // Refused before anything was created.
        assert!(!Path::new(&data).exists(), "{args:?}");
    }
    // With the flag (or its variable, or the file's key) it starts, and warns.
    let insecure_file = write(
        dir.path(),
        "insecure.toml",
        "listen = \"0.0.0.0:0\"\ninsecure-http = true\n",
    );
    for (args, env) in [
        (
            vec![
                "server",
                "--listen",
                "0.0.0.0:0",
                "--insecure-http",
                "--data-dir",
                &data,
            ],
            vec![],
        ),
        (
            vec!["server", "--listen", "0.0.0.0:0", "--data-dir", &data],
            vec![("WHARF_INSECURE_HTTP", "1")],
        ),
        (
            vec!["server", "--config", &insecure_file, "--data-dir", &data],
            vec![],
        ),
    ] {
        let (line, stderr) = start_and_stop(&args, &env);
        assert!(
            line.starts_with("wharf server listening on http://0.0.0.0:"),
            "{line}"
        );
        assert!(stderr.contains("WARN"), "{stderr}");
        assert!(stderr.contains("clear text"), "{stderr}");
    }
    // A loopback address needs no flag and warns about nothing.
    let (line, stderr) =
        start_and_stop(&["server", "--listen", "[::1]:0", "--data-dir", &data], &[]);
    assert!(
        line.starts_with("wharf server listening on http://[::1]:"),
        "{line}"
    );
    assert!(!stderr.contains("clear text"), "{stderr}");
}
