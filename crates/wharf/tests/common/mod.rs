//! Process management for the CLI tests: a real `wharf server` on port 0 in a
//! temporary data directory (stopped with SIGTERM, killed on drop), and a runner for
//! the real `wharf` binary with its own configuration directory, which keeps every
//! output it saw so a test can search them all.

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
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        wait_with_deadline(&mut child).expect("the server did not stop after SIGTERM")
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

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        // Output goes to files rather than pipes, so that a child that never exits
        // can be killed at the deadline without a reader thread blocking.
        let dir = tempfile::tempdir().expect("temp dir");
        let out_path = dir.path().join("stdout");
        let err_path = dir.path().join("stderr");
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("WHARF_SERVER")
            .env_remove("WHARF_TOKEN")
            .env_remove("RUST_LOG")
            .env("XDG_CONFIG_HOME", self.config_home.path())
            .env("HOME", self.config_home.path())
            .stdout(File::create(&out_path).expect("stdout file"))
            .stderr(File::create(&err_path).expect("stderr file"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn wharf");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let status = wait_with_deadline(&mut child)
            .unwrap_or_else(|| panic!("wharf {args:?} did not finish in {DEADLINE:?}"));
        let read = |path: &Path| {
            let mut text = String::new();
            File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .expect("read output");
            text
        };
        let run = Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            // No code means a signal killed it: a crash, never an expected outcome.
            code: status.code().unwrap_or(-1),
            stdout: read(&out_path),
            stderr: read(&err_path),
        };
        assert!(!run.stderr.contains("panicked"), "wharf panicked: {run:#?}");
        self.history.lock().unwrap().push(run.clone());
        run
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
