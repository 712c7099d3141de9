//! A real PostgreSQL server for the tests of one process, and a fresh database
//! on it for each test.
//!
//! With `WHARF_TEST_POSTGRES_URL` set (a `postgres://` URL of a role that may
//! create databases), the tests use that server. Otherwise the first test that
//! asks starts a private cluster of Debian's `postgresql` package: `initdb` in a
//! new temporary directory (as the `postgres` system user when the tests run as
//! root, since initdb refuses root), `pg_ctl start` on a free port of 127.0.0.1
//! with the socket in that directory and `fsync=off`. A watchdog process stops
//! the server and removes the directory once this test process is gone, however
//! it ends. Without PostgreSQL installed every test that needs it fails, saying
//! to run `scripts/setup.sh`: it is never skipped.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Where the tests' databases are made: the URL of a database to connect to
/// for `CREATE DATABASE`, and how to name a database in a URL.
struct Server {
    admin_url: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The URL of a new, empty database on the tests' server.
pub async fn fresh_database() -> String {
    let server = match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(why) => panic!("{why}"),
    };
    let n = DATABASES.fetch_add(1, Ordering::SeqCst);
    // The process id keeps names apart when several test processes share a
    // server given by WHARF_TEST_POSTGRES_URL.
    let name = format!("wharf_test_{}_{n}", std::process::id());
    let (client, connection) = tokio_postgres::connect(&server.admin_url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test server");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating a test database");
    drop(client);
    let _ = connection.await;
    with_database(&server.admin_url, &name)
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        panic!("WHARF_TEST_POSTGRES_URL must be a postgres:// URL");
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[authority_end..]
        .find('?')
        .map(|i| &rest[authority_end + i..])
        .unwrap_or("");
    format!(
        "{}{}/{name}{query}",
        &url[..scheme_end],
        &rest[..authority_end]
    )
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var("WHARF_TEST_POSTGRES_URL") {
        return Ok(Server { admin_url: url });
    }
    let bin = postgres_bin().ok_or_else(|| {
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run \
         scripts/setup.sh, or set WHARF_TEST_POSTGRES_URL to a server the tests may \
         create databases on"
            .to_owned()
    })?;
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    // As root the server runs as `postgres`, which must reach the directory: a
    // TMPDIR inside root's home would not do, /tmp does.
    let parent = if root {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let dir = parent.join(format!(
        "wharf-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir(&dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    if root {
        run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
    }
    let data = dir.join("data");
    let as_owner = |program: PathBuf| {
        if root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    };
    run(as_owner(bin.join("initdb")).arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
    ]))?;
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
        dir.display()
    );
    run(as_owner(bin.join("pg_ctl"))
        .arg("start")
        .arg("-w")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-o")
        .arg(&options))?;
    watch(&dir, &data)?;
    Ok(Server {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    })
}

/// The newest installed PostgreSQL's `bin` directory.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|err| format!("finding a free port: {err}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|err| format!("finding a free port: {err}"))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("running {command:?}: {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Starts a process, in a session of its own, that waits for this process to
/// end, then stops the server at once (SIGQUIT to the postmaster) and removes
/// its directory.
fn watch(dir: &Path, data: &Path) -> Result<(), String> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         pm=$(head -n 1 '{data}/postmaster.pid' 2>/dev/null); \
         if [ -n \"$pm\" ]; then kill -QUIT \"$pm\" 2>/dev/null; \
           while kill -0 \"$pm\" 2>/dev/null; do sleep 0.2; done; fi; \
         rm -rf '{dir}'",
        pid = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("starting the test server's watchdog: {err}"))?;
    Ok(())
}
