//! The agent and the client commands refuse a plain `http://` server that is not on
//! this host unless `--insecure-http` (or `WHARF_INSECURE_HTTP`) is given: the
//! refusal, its exit code and message, and that the flag lets the command through.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wharf");

/// `0.0.0.0` is not a loopback address, yet connecting to it reaches this host at
/// once (connection refused on port 1), so a command let through fails fast.
const REMOTE: &str = "http://0.0.0.0:1";

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let config_home = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", config_home.path())
        .env("HOME", config_home.path());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WHARF_") {
            command.env_remove(key);
        }
    }
    let output = command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run wharf");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code().unwrap_or(-1), stderr)
}

fn assert_refused(args: &[&str], env: &[(&str, &str)]) {
    let (code, stderr) = run(args, env);
    assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
    assert!(
        stderr.contains(&format!("refusing to talk plain HTTP to {REMOTE}")),
        "{args:?}: {stderr}"
    );
    assert!(stderr.contains("--insecure-http"), "{args:?}: {stderr}");
    assert!(stderr.contains("https://"), "{args:?}: {stderr}");
}

#[test]
fn client_commands_refuse_plain_http_to_another_host() {
    let token = [("WHARF_TOKEN", "not-a-real-token")];
    assert_refused(&["app", "list", "--server", REMOTE], &token);
    assert_refused(&["app", "list"], &[("WHARF_SERVER", REMOTE), token[0]]);
    assert_refused(&["login", "--server", REMOTE], &token);
    // `--insecure-http=false` beats the variable.
    assert_refused(
        &["--insecure-http=false", "app", "list", "--server", REMOTE],
        &[("WHARF_INSECURE_HTTP", "1"), token[0]],
    );
    // Let through, the command gets as far as the network.
    for (args, env) in [
        (
            vec!["app", "list", "--server", REMOTE, "--insecure-http"],
            vec![token[0]],
        ),
        (
            vec!["--insecure-http", "login", "--server", REMOTE],
            vec![token[0]],
        ),
        (
            vec!["app", "list", "--server", REMOTE],
            vec![token[0], ("WHARF_INSECURE_HTTP", "1")],
        ),
    ] {
        let (code, stderr) = run(&args, &env);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach the Wharf server"),
            "{args:?}: {stderr}"
        );
    }
    // Loopback and https need no flag (the https server is not there: exit 1).
    let (code, stderr) = run(&["app", "list", "--server", "http://127.0.0.1:1"], &token);
    assert_eq!(code, 1, "{stderr}");
    let (code, stderr) = run(&["app", "list", "--server", "https://0.0.0.0:1"], &token);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn the_agent_refuses_plain_http_to_another_host() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("agent").display().to_string();
    let args = ["agent", "--server", REMOTE, "--state-dir", &state_dir];
    let env = [("WHARF_REGISTRATION_TOKEN", "not-a-real-token")];
    assert_refused(&args, &env);
    // Refused before it made its state directory.
    assert!(!state.path().join("agent").exists());
}
