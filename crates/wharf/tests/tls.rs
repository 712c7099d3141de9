//! The real `wharf` binary over TLS: `wharf server --tls auto` (its files and their
//! modes, the fingerprint, the CA reused on a second start), the CLI trusting that
//! CA with `--ca-cert` and refusing without it, `wharf login` saving the CA, the real
//! agent registering and heartbeating over https, SIGHUP switching `--tls-cert`
//! files, and every bad certificate/key input with its exit code.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wharf");
const DEADLINE: Duration = Duration::from_secs(60);

/// A `wharf server` process, killed on drop.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `wharf server --listen 127.0.0.1:0 --data-dir DIR ARGS...` and waits
    /// for its address line.
    fn start(data_dir: &Path, args: &[&str]) -> Server {
        Self::start_on("127.0.0.1:0", data_dir, args)
    }

    /// [`Server::start`] listening on `listen`.
    fn start_on(listen: &str, data_dir: &Path, args: &[&str]) -> Server {
        let log = data_dir.with_extension("log");
        let mut command = Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WHARF_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(["--heartbeat-interval", "1s", "--offline-after", "5s"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            panic!(
                "no address line; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let url = line
            .strip_prefix("wharf server listening on ")
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_owned();
        Server { child, url, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `wharf ARGS` with its own configuration directory `config`.
fn run(config: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WHARF_") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn fingerprint_in(log: &str) -> String {
    let start = log.find("fingerprint sha256:").expect("a fingerprint line") + 12;
    log[start..start + 7 + 64].to_owned()
}

#[test]
fn tls_auto_serves_https_that_the_cli_and_the_agent_trust_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    let server = Server::start(&data, &["--tls", "auto", "--tls-san", "wharf.example"]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let tls = data.join("tls");
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert_eq!(mode(&tls.join(file)), 0o600, "{file}");
    }
    let log = server.log();
    let fingerprint = fingerprint_in(&log);
    assert!(fingerprint.starts_with("sha256:"), "{log}");
    // The printed fingerprint is the CA file's.
    let ca = std::fs::read_to_string(tls.join("ca.pem")).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            ca.lines()
                .filter(|line| !line.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    use base64::Engine as _;
    use sha2::Digest as _;
    assert_eq!(
        fingerprint,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&der)))
    );
    let ca_path = tls.join("ca.pem");
    let ca_arg = ca_path.to_str().unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let url = server.url.clone();

    // With the CA: the API answers.
    let listed = run(
        &config,
        &[
            "--server",
            &url,
            "--token",
            &token,
            "--ca-cert",
            ca_arg,
            "app",
            "list",
        ],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    // Without it: refused, saying why.
    let refused = run(
        &config,
        &["--server", &url, "--token", &token, "app", "list"],
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("certificate is not signed by a CA this machine trusts")
            && refused.stderr.contains("--ca-cert"),
        "{}",
        refused.stderr
    );

    // `wharf login --ca-cert` saves the CA; later commands need no flag.
    let login = run(
        &config,
        &[
            "--server",
            &url,
            "--token",
            &token,
            "--ca-cert",
            ca_arg,
            "login",
        ],
    );
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert!(
        login
            .stdout
            .contains(&format!("trusting only the CA {fingerprint}")),
        "{}",
        login.stdout
    );
    let listed = run(&config, &["app", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);

    // The real agent, trusting the CA, registers and heartbeats over https.
    let created = run(&config, &["-o", "json", "instance", "token", "create"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let created: serde_json::Value = serde_json::from_str(&created.stdout).unwrap();
    let registration = created["token"].as_str().unwrap().to_owned();
    let state = dir.path().join("agent");
    let agent_log = dir.path().join("agent.log");
    let mut agent = Command::new(BIN)
        .args([
            "agent",
            "--server",
            &url,
            "--ca-cert",
            ca_arg,
            "--name",
            "tls-1",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--docker-socket")
        .arg(dir.path().join("no-docker.sock"))
        .env("WHARF_REGISTRATION_TOKEN", &registration)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .unwrap();
    let mut heartbeats = std::collections::BTreeSet::new();
    let start = Instant::now();
    while heartbeats.len() < 3 {
        assert!(
            start.elapsed() < DEADLINE,
            "no heartbeats; agent log:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        let listed = run(&config, &["-o", "json", "instance", "list"]);
        let instances: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap_or_default();
        if let Some(instance) = instances.as_array().and_then(|list| list.first()) {
            assert_eq!(instance["name"], "tls-1");
            if let Some(at) = instance["last_heartbeat_at"].as_str() {
                heartbeats.insert(at.to_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = agent.kill();
    let _ = agent.wait();

    // An agent given another CA is refused before it sends its token: exit 1.
    let other = dir.path().join("other");
    drop(Server::start(&other, &["--tls", "auto"]));
    let other_ca = other.join("tls/ca.pem");
    let refused = run(
        &config,
        &[
            "--server",
            &url,
            "--ca-cert",
            other_ca.to_str().unwrap(),
            "agent",
            "--state-dir",
            dir.path().join("agent-2").to_str().unwrap(),
            "--registration-token",
            "wharf_reg_not_sent",
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "the server's certificate is not signed by the CA in {}",
            other_ca.display()
        )),
        "{}",
        refused.stderr
    );
    drop(server);

    // A second start reuses the CA (same fingerprint, no new CA made).
    let again = Server::start(&data, &["--tls", "auto", "--tls-san", "wharf.example"]);
    let log = again.log();
    assert_eq!(fingerprint_in(&log), fingerprint, "{log}");
    assert!(!log.contains("Created a private CA"), "{log}");
    assert_eq!(std::fs::read_to_string(&ca_path).unwrap(), ca);
}

#[test]
fn sighup_switches_to_renewed_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    // Two CAs and their server certificates, made by `--tls auto` starts.
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    drop(Server::start(&first, &["--tls", "auto"]));
    drop(Server::start(&second, &["--tls", "auto"]));
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::copy(first.join("tls/server.pem"), &cert).unwrap();
    std::fs::copy(first.join("tls/server.key"), &key).unwrap();

    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let list = |ca: &Path| {
        run(
            &config,
            &[
                "--server",
                &server.url,
                "--token",
                &token,
                "--ca-cert",
                ca.to_str().unwrap(),
                "app",
                "list",
            ],
        )
    };
    let (first_ca, second_ca) = (first.join("tls/ca.pem"), second.join("tls/ca.pem"));
    assert_eq!(list(&first_ca).code, 0);
    assert_eq!(list(&second_ca).code, 1);

    // Renewed files, then SIGHUP: the same listener now presents the new chain.
    std::fs::copy(second.join("tls/server.pem"), &cert).unwrap();
    std::fs::copy(second.join("tls/server.key"), &key).unwrap();
    server.signal("HUP");
    let start = Instant::now();
    while list(&second_ca).code != 0 {
        assert!(start.elapsed() < DEADLINE, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(list(&first_ca).code, 1);

    // A broken renewal: SIGHUP logs an error and keeps serving the current pair.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    server.signal("HUP");
    let start = Instant::now();
    while !server.log().contains("cannot reload the TLS certificate") {
        assert!(start.elapsed() < DEADLINE, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.log().contains("server.pem"), "{}", server.log());
    assert_eq!(list(&second_ca).code, 0);
}

/// `wharf server ARGS` that must not start: (exit code, stderr).
fn refused_start(data: &Path, args: &[&str]) -> (i32, String) {
    let run = run(
        data,
        &[
            &[
                "server",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ],
            args,
        ]
        .concat(),
    );
    assert!(run.stdout.is_empty(), "{args:?} started: {}", run.stdout);
    (run.code, run.stderr)
}

#[test]
fn bad_tls_input_is_refused_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    drop(Server::start(&first, &["--tls", "auto"]));
    drop(Server::start(&second, &["--tls", "auto"]));
    let path = |p: PathBuf| p.to_str().unwrap().to_owned();
    let cert = path(first.join("tls/server.pem"));
    let key = path(first.join("tls/server.key"));
    let other_key = path(second.join("tls/server.key"));
    let data = dir.path().join("data");
    let missing = path(dir.path().join("missing.pem"));

    // Usage conflicts: exit 2.
    for (args, expected) in [
        (
            vec!["--tls", "auto", "--tls-cert", &cert, "--tls-key", &key],
            "not both",
        ),
        (vec!["--tls-cert", &cert], "needs --tls-key"),
        (vec!["--tls-key", &key], "needs --tls-cert"),
        (vec!["--tls-san", "a.example"], "needs --tls auto"),
        (vec!["--tls", "manual"], "invalid value"),
    ] {
        let (code, stderr) = refused_start(&data, &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // The same conflict from the configuration file.
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        format!("tls = \"auto\"\ntls-cert = {cert:?}\ntls-key = {key:?}\n"),
    )
    .unwrap();
    let (code, stderr) = refused_start(&data, &["--config", &path(file)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not both"), "{stderr}");

    // Bad files: exit 1, naming the file and the problem, and no key bytes.
    let key_text = std::fs::read_to_string(&key).unwrap();
    let key_body: String = key_text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let unreadable = dir.path().join("unreadable.pem");
    std::fs::create_dir(&unreadable).unwrap();
    let unreadable = path(unreadable);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--tls-cert", &missing, "--tls-key", &key],
            vec!["missing.pem", "cannot read the certificate file"],
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &missing],
            vec!["missing.pem", "cannot read the key file"],
        ),
        (
            vec!["--tls-cert", &unreadable, "--tls-key", &key],
            vec!["unreadable.pem", "cannot read"],
        ),
        (
            vec!["--tls-cert", &key, "--tls-key", &key],
            vec!["server.key", "holds no PEM certificate"],
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &other_key],
            vec![
                "does not belong to the certificate",
                "second/tls/server.key",
            ],
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &cert],
            vec!["server.pem", "no usable private key"],
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = refused_start(&data, &args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{args:?}: {part:?} not in {stderr}");
        }
        assert!(!stderr.contains(&key_body[..24]), "{stderr}");
    }

    // An expired certificate (made here, signed by itself).
    let expired_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&expired_key).unwrap();
    let expired_cert = dir.path().join("expired.pem");
    let expired_key_path = dir.path().join("expired.key");
    std::fs::write(&expired_cert, expired.pem()).unwrap();
    std::fs::write(&expired_key_path, expired_key.serialize_pem()).unwrap();
    let (code, stderr) = refused_start(
        &data,
        &[
            "--tls-cert",
            &path(expired_cert),
            "--tls-key",
            &path(expired_key_path),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("expired.pem") && stderr.contains("expired on") && stderr.contains("2021"),
        "{stderr}"
    );
}

#[test]
fn sighup_without_tls_leaves_the_server_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &[]);
    assert!(server.url.starts_with("http://"), "{}", server.url);
    server.signal("HUP");
    let start = Instant::now();
    while !server.log().contains("no TLS certificate to reload") {
        assert!(start.elapsed() < DEADLINE, "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "{}",
        server.log()
    );
}

#[test]
fn with_tls_a_non_loopback_address_needs_no_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Refused without TLS ...
    let run = run(
        dir.path(),
        &[
            "server",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("without TLS"), "{}", run.stderr);
    // ... served with it, and no clear-text warning.
    let server = Server::start_on("0.0.0.0:0", &data, &["--tls", "auto"]);
    assert!(server.url.starts_with("https://0.0.0.0:"), "{}", server.url);
    assert!(!server.log().contains("clear text"), "{}", server.log());
}
