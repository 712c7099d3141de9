//! Process management for the CLI tests: a real `wharf server` on port 0 in a
//! temporary data directory and real `wharf agent`s (each stopped with SIGTERM,
//! killed on drop), and a runner for the real `wharf` binary with its own
//! configuration directory, which keeps every output it saw so a test can search
//! them all; it can also start a command in the background and wait for it later.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_wharf");

/// How long any one process may take before the test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `wharf server`.
pub struct TestServer {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    /// The server's stderr (its log) for every start, appended.
    pub log_path: PathBuf,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0` with `data_dir`, appending its log (stderr)
    /// to `log_path`, and waits for the line that announces its address.
    pub fn start(data_dir: &Path, log_path: &Path, rust_log: &str) -> TestServer {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("open the server log");
        let mut child = Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("WHARF_SERVER")
            .env_remove("WHARF_TOKEN")
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn wharf server");
        let stdout = child.stdout.take().expect("server stdout");
        let (tx, rx) = mpsc::channel();
        // The thread keeps reading so the pipe stays open and drained for the
        // server's whole life.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let mut server = TestServer {
            child: Some(child),
            url: String::new(),
            data_dir: data_dir.to_owned(),
            log_path: log_path.to_owned(),
        };
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(_) => panic!(
                "the server announced no address; its log:\n{}",
                server.log()
            ),
        };
        let url = line
            .strip_prefix("wharf server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line on stdout: {line:?}"));
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        server.url = url.to_owned();
        server
    }

    /// The admin token the server wrote on its first start.
    pub fn admin_token(&self) -> String {
        fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("read admin.token")
            .trim()
            .to_owned()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the server to exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        terminate(&mut child).expect("the server did not stop after SIGTERM")
    }
}

/// Sends SIGTERM to `child` and waits for it (killing it at the deadline).
fn terminate(child: &mut Child) -> Option<ExitStatus> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    wait_with_deadline(child)
}

/// A running `wharf agent`, started with its registration token in
/// `WHARF_REGISTRATION_TOKEN` and its own state directory.
pub struct TestAgent {
    child: Option<Child>,
    pub name: String,
    /// The agent's stderr (its log).
    pub log_path: PathBuf,
}

impl TestAgent {
    /// Starts `wharf agent --server URL --name NAME --state-dir DIR`, logging to
    /// `DIR.log`. The Docker socket points at nothing, so that the tests do not
    /// depend on a Docker Engine (`command` deployments need none).
    pub fn start(server_url: &str, registration_token: &str, name: &str, state_dir: &Path) -> Self {
        let no_docker = state_dir.with_extension("no-docker.sock");
        Self::start_with_docker(server_url, registration_token, name, state_dir, &no_docker)
    }

    /// Like [`TestAgent::start`], with the Docker Engine at `docker_socket`.
    pub fn start_with_docker(
        server_url: &str,
        registration_token: &str,
        name: &str,
        state_dir: &Path,
        docker_socket: &Path,
    ) -> Self {
        Self::start_with_args(
            server_url,
            registration_token,
            name,
            state_dir,
            docker_socket,
            &[],
        )
    }

    /// Like [`TestAgent::start_with_docker`], with more arguments for `wharf agent`
    /// (such as `--scaling-group NAME --deregister`).
    pub fn start_with_args(
        server_url: &str,
        registration_token: &str,
        name: &str,
        state_dir: &Path,
        docker_socket: &Path,
        extra: &[&str],
    ) -> Self {
        let log_path = state_dir.with_extension("log");
        let log = File::create(&log_path).expect("create the agent log");
        let child = Command::new(BIN)
            .args([
                "agent",
                "--server",
                server_url,
                "--name",
                name,
                "--state-dir",
            ])
            .arg(state_dir)
            .arg("--docker-socket")
            .arg(docker_socket)
            .args(extra)
            .env_remove("WHARF_SERVER")
            .env_remove("WHARF_TOKEN")
            .env("WHARF_REGISTRATION_TOKEN", registration_token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wharf agent");
        TestAgent {
            child: Some(child),
            name: name.to_owned(),
            log_path,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the agent to exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the agent is running");
        terminate(&mut child).expect("the agent did not stop after SIGTERM")
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_with_deadline(child: &mut Child) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// What one run of the CLI did.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns the run.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }

    /// Asserts the exit code and returns the run.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, code, "{self:#?}");
        self
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {self:#?}"))
    }

    /// Asserts that stderr is one `error: ...` line containing every fragment.
    #[track_caller]
    pub fn error_mentions(self, fragments: &[&str]) -> Run {
        let line = self.stderr.trim_end();
        assert!(
            line.starts_with("error: ") && !line.contains('\n'),
            "not one error line: {self:#?}"
        );
        for fragment in fragments {
            assert!(line.contains(fragment), "{fragment:?} missing: {self:#?}");
        }
        assert!(self.stdout.is_empty(), "stdout on error: {self:#?}");
        self
    }
}

/// Runs the real `wharf` binary with a private configuration directory and no
/// WHARF_* variables from the environment of the test.
pub struct Cli {
    pub config_home: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Every run so far, for searching all outputs at the end of a test.
    pub history: Mutex<Vec<Run>>,
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            config_home: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
            history: Mutex::new(Vec::new()),
        }
    }

    /// Sets an environment variable for every later run.
    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_home.path().join("wharf").join("config.json")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.run_with_stdin(args, Some(stdin))
    }

    /// Starts `wharf ARGS` in the background; [`Background::wait`] collects it.
    pub fn spawn(&self, args: &[&str]) -> Background<'_> {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = self
            .command(args, &dir, false)
            .spawn()
            .expect("spawn wharf");
        Background {
            cli: self,
            child: Some(child),
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The command for one run, with stdout and stderr going to files in `dir`.
    fn command(&self, args: &[&str], dir: &tempfile::TempDir, stdin: bool) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("WHARF_SERVER")
            .env_remove("WHARF_TOKEN")
            .env_remove("RUST_LOG")
            .env("XDG_CONFIG_HOME", self.config_home.path())
            .env("HOME", self.config_home.path())
            .stdout(File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(File::create(dir.path().join("stderr")).expect("stderr file"))
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        // Output goes to files rather than pipes, so that a child that never exits
        // can be killed at the deadline without a reader thread blocking.
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = self
            .command(args, &dir, stdin.is_some())
            .spawn()
            .expect("spawn wharf");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let status = wait_with_deadline(&mut child)
            .unwrap_or_else(|| panic!("wharf {args:?} did not finish in {DEADLINE:?}"));
        self.collect(args.iter().map(|a| a.to_string()).collect(), status, &dir)
    }

    fn collect(&self, args: Vec<String>, status: ExitStatus, dir: &tempfile::TempDir) -> Run {
        let run = Run {
            args,
            // No code means a signal killed it: a crash, never an expected outcome.
            code: status.code().unwrap_or(-1),
            stdout: read_file(&dir.path().join("stdout")),
            stderr: read_file(&dir.path().join("stderr")),
        };
        assert!(!run.stderr.contains("panicked"), "wharf panicked: {run:#?}");
        self.history.lock().unwrap().push(run.clone());
        run
    }
}

fn read_file(path: &Path) -> String {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .expect("read output");
    text
}

/// A `wharf` command running in the background (killed on drop).
pub struct Background<'a> {
    cli: &'a Cli,
    child: Option<Child>,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Background<'_> {
    /// What the command has written on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        read_file(&self.dir.path().join("stderr"))
    }

    /// Waits until stderr contains `text`; panics at the deadline.
    #[track_caller]
    pub fn wait_for_stderr(&self, text: &str) {
        let start = Instant::now();
        while !self.stderr_so_far().contains(text) {
            assert!(
                start.elapsed() < DEADLINE,
                "wharf {:?} never wrote {text:?} on stderr; it wrote:\n{}",
                self.args,
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        let child = self.child.as_ref().expect("running");
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT failed");
    }

    /// Waits for the command to end (killing it at the deadline) and returns the run.
    pub fn wait(mut self) -> Run {
        let mut child = self.child.take().expect("running");
        let status = wait_with_deadline(&mut child)
            .unwrap_or_else(|| panic!("wharf {:?} did not finish in {DEADLINE:?}", self.args));
        self.cli
            .collect(std::mem::take(&mut self.args), status, &self.dir)
    }
}

impl Drop for Background<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Registers a fake instance through the agent API, as `wharf agent` would, and
/// returns its id. A raw HTTP/1.1 request keeps the tests free of another client.
pub fn register_instance(
    server_url: &str,
    registration_token: &str,
    name: &str,
    hostname: &str,
) -> String {
    let body = serde_json::json!({
        "registration_token": registration_token,
        "name": name,
        "hostname": hostname,
        "os": "linux",
        "arch": "x86_64",
        "agent_version": "0.0.0-test",
        "labels": {"zone": "a"},
    })
    .to_string();
    let host = server_url.strip_prefix("http://").expect("http URL");
    let mut stream = TcpStream::connect(host).expect("connect to the server");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    let request = format!(
        "POST /agent/v1/register HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         {}: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        wharf_api::agent::PROTOCOL_HEADER,
        wharf_api::agent::AGENT_PROTOCOL_VERSION,
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.1 201"),
        "registration failed: {response}"
    );
    let registered: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    registered["instance_id"]
        .as_str()
        .expect("instance_id")
        .to_owned()
}
