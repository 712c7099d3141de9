//! The server under more than it can take, and when its store or disk fails: a
//! flood of bad credentials and idle connections, slow clients, a full
//! connection table, a shutdown with requests in flight, a store that takes no
//! write, a full disk and a corrupt database. Each test prints what it measured.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wharf_server::{ConnectionLimits, Liveness};

mod common;

use common::{data_dir, fleet, Server};

fn limits(
    max_connections: usize,
    header_read_timeout: Duration,
    grace: Duration,
) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        header_read_timeout,
        shutdown_grace: grace,
    }
}

fn server_addr(server: &Server) -> SocketAddr {
    server.url.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Waits until the server closes `stream` (reads to its end); how long it took.
async fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_disconnected_after_the_header_read_timeout() {
    let (_tmp, dir) = data_dir();
    let server = Server::start_with_limits(
        &dir,
        Liveness::default(),
        Some(limits(64, Duration::from_secs(1), Duration::from_secs(1))),
    )
    .await;
    let addr = server_addr(&server);
    let silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A kept-alive connection idle after its answer is closed as well.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let (silent, slow, idle) = tokio::join!(
        closed_within(silent, Duration::from_secs(5)),
        closed_within(slow, Duration::from_secs(5)),
        closed_within(idle, Duration::from_secs(5)),
    );
    println!("header-read timeout 1 s: silent closed after {silent:?}, slow after {slow:?}, idle after {idle:?}");
    for (what, took) in [("silent", silent), ("slow", slow), ("idle", idle)] {
        let took = took.unwrap_or_else(|| panic!("the {what} connection was not closed"));
        assert!(
            took >= Duration::from_millis(500),
            "{what} closed too soon: {took:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let (_tmp, dir) = data_dir();
    let server = Server::start_with_limits(
        &dir,
        Liveness::default(),
        Some(limits(2, Duration::from_secs(30), Duration::from_secs(1))),
    )
    .await;
    let addr = server_addr(&server);
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let healthz = format!("{}/healthz", server.url);
    let waited = client
        .get(&healthz)
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    assert!(waited.is_err(), "a third connection was served: {waited:?}");
    drop(first);
    let started = Instant::now();
    let answer = client
        .get(&healthz)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("served once a slot is free");
    println!(
        "limit 2: the third connection waited, then was served {:?} after a slot freed",
        started.elapsed()
    );
    assert_eq!(answer.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_ends_within_its_grace() {
    let (_tmp, dir) = data_dir();
    let server = Server::start_with_limits(
        &dir,
        Liveness::default(),
        Some(limits(64, Duration::from_secs(60), Duration::from_secs(2))),
    )
    .await;
    let _agents = fleet(&server, 1).await;
    let id = server
        .create_release("prod", json!({"deployment": "v1"}))
        .await;
    let version = server.release(&id).await["version"].clone();
    // A read that waits a second for a change that does not come: in flight
    // when shutdown begins, it still gets its answer.
    let url = format!(
        "{}/api/v1/releases/{id}?after={}&wait_secs=1",
        server.url,
        version.as_str().unwrap_or_default()
    );
    let admin = server.admin.clone();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(admin)
            .send()
            .await
            .map(|r| r.status())
    });
    // A client stuck half-way through its request holds its connection open.
    let mut stuck = TcpStream::connect(server_addr(&server)).await.unwrap();
    stuck.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    let answered = in_flight.await.unwrap();
    println!("shutdown with a request in flight and a stuck client: {took:?} (grace 2 s), in-flight answer {answered:?}");
    assert_eq!(answered.ok(), Some(StatusCode::OK));
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_takes_no_write_answers_503_with_retry_after_and_writes_nothing() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    // Longer than the store's busy timeout (5 s).
    let db = dir.join("wharf.db");
    let (taken_tx, taken) = tokio::sync::oneshot::channel();
    let stall = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        taken_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(7));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    taken.await.unwrap();
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/apps", server.url))
        .bearer_auth(&server.admin)
        .json(&json!({"name": "shop"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.unwrap();
    println!(
        "write during a stall: {status} after {:?}, Retry-After {retry_after:?}: {body}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(retry_after.is_some());
    // Reads go on meanwhile.
    assert_eq!(server.get("/api/v1/apps").await, json!([]));
    stall.await.unwrap();
    assert_eq!(
        server.get("/api/v1/apps").await,
        json!([]),
        "nothing was written"
    );
    let (status, _) = server.post("/api/v1/apps", json!({"name": "shop"})).await;
    assert_eq!(status, StatusCode::CREATED);
    server.stop().await;
}

/// Sends `count` requests, `concurrency` at a time, each from `from`, made by
/// `request`; how many got each status.
async fn flood(
    from: IpAddr,
    count: usize,
    concurrency: usize,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> std::collections::BTreeMap<u16, usize> {
    use futures::StreamExt;
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    let request = std::sync::Arc::new(request);
    let statuses: Vec<u16> = futures::stream::iter(0..count)
        .map(|_| {
            let (client, request) = (client.clone(), request.clone());
            async move {
                match request(&client).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut counts = std::collections::BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// The bad-input flood: 10,000 registrations with bad tokens and 1,000
/// requests with bad bearer tokens from one address, 2,000 connections from
/// another that send nothing. Meanwhile a release of four instances succeeds and
/// the admin's reads of it answer within a second; the store sees only each
/// address's first failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_credentials_and_idle_connections_leaves_releases_and_reads_working() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 4).await;
    let addr = server_addr(&server);
    let attacker: IpAddr = [127, 0, 0, 2].into();
    let idler: IpAddr = [127, 0, 0, 3].into();

    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(connect_from(idler, addr).await);
    }
    let url = server.url.clone();
    let registrations = tokio::spawn(flood(attacker, 10_000, 64, move |client| {
        let token = format!("wrt_bogus-{}", rand_suffix());
        client
            .post(format!("{url}/agent/v1/register"))
            .header("x-wharf-agent-protocol", "3")
            .json(
                &json!({"registration_token": token, "hostname": "evil", "os": "linux",
                          "arch": "x86_64", "agent_version": "1"}),
            )
    }));
    let url = server.url.clone();
    let bearers = tokio::spawn(flood(attacker, 1_000, 32, move |client| {
        client
            .get(format!("{url}/api/v1/releases"))
            .bearer_auth(format!("wharf_bogus-{}", rand_suffix()))
    }));

    // The admin lists releases every 20 ms for as long as the flood lasts.
    let (url, admin) = (server.url.clone(), server.admin.clone());
    let flood_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lister = tokio::spawn({
        let flood_over = flood_over.clone();
        async move {
            let client = reqwest::Client::new();
            let (mut count, mut slowest) = (0usize, Duration::ZERO);
            while !flood_over.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = Instant::now();
                let status = client
                    .get(format!("{url}/api/v1/releases"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .map(|r| r.status());
                assert_eq!(status.ok(), Some(StatusCode::OK));
                slowest = slowest.max(asked.elapsed());
                count += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (count, slowest)
        }
    });
    // Releases one after another, v1 then v2 and so on, for as long as the
    // flood lasts; the admin reads each while it runs.
    let started = Instant::now();
    let mut slowest_read = Duration::ZERO;
    let (mut reads, mut releases) = (0, Vec::new());
    while !(registrations.is_finished() && bearers.is_finished()) || releases.is_empty() {
        let version = ["v1", "v2"][releases.len() % 2];
        let id = server
            .create_release("prod", json!({"deployment": version, "batches": 2}))
            .await;
        let release = loop {
            for agent in &agents {
                if let Some(work) = agent.poll(0).await {
                    agent.run(&work, None).await;
                }
            }
            let asked = Instant::now();
            let release = server.release(&id).await;
            slowest_read = slowest_read.max(asked.elapsed());
            reads += 1;
            if release["state"] != "running" && release["state"] != "pending" {
                break release;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{release:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(release["state"], "succeeded", "{release:#}");
        releases.push(id);
    }
    let registrations = registrations.await.unwrap();
    let bearers = bearers.await.unwrap();
    flood_over.store(true, std::sync::atomic::Ordering::Relaxed);
    let (lists, slowest_list) = lister.await.unwrap();
    assert!(
        slowest_list < Duration::from_secs(1),
        "a list took {slowest_list:?}"
    );
    println!(
        "flood: {} releases succeeded in {:?} while it lasted; {reads} release reads, slowest {slowest_read:?}; \
         {lists} release lists, slowest {slowest_list:?}; \
         10,000 bad registrations by status {registrations:?}; 1,000 bad bearer tokens by status {bearers:?}; 2,000 idle connections held",
        releases.len(),
        started.elapsed()
    );
    assert!(
        slowest_read < Duration::from_secs(1),
        "a read took {slowest_read:?}"
    );
    // Only the address's first failures reached the store (its budget, plus the
    // requests already past the check when the budget ran out); the rest were
    // refused before it.
    let may_reach = wharf_server::MAX_FAILURES as usize + 64;
    assert_eq!(registrations.values().sum::<usize>(), 10_000);
    let reached = registrations.get(&401).copied().unwrap_or(0);
    assert!(
        reached <= may_reach,
        "{reached} bad registrations reached the store"
    );
    assert!(registrations.get(&429).copied().unwrap_or(0) >= 10_000 - may_reach);
    assert!(
        bearers.get(&401).copied().unwrap_or(0) <= may_reach,
        "{bearers:?}"
    );
    assert!(
        bearers.get(&429).copied().unwrap_or(0) >= 1_000 - may_reach,
        "{bearers:?}"
    );
    drop(idle);
    server.stop().await;
}

/// A distinct suffix per request, so that no refusal cache could answer it.
fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A small filesystem of its own (tmpfs), unmounted when dropped. Mounting needs
/// root, as the test suite runs (CI, scripts/test.sh); without it the test fails
/// saying so rather than passing untested.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            mounted.status.success(),
            "mounting a {size} tmpfs for the disk-full test needs root: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem is full; its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // The last partial blocks, byte-sized chunks.
        while file.write_all(&block[..512]).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_writes_nothing_and_writes_resume_once_space_is_freed() {
    let disk = SmallDisk::mount("8m");
    let dir = disk.path().join("data");
    let server = Server::start(&dir).await;
    let (status, _) = server.post("/api/v1/apps", json!({"name": "before"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let filler = disk.fill();
    // Writes that need new pages fail; a deployment carries scripts, so it
    // needs room. Try a few, as SQLite may still find room in free pages.
    let big_script = "echo start\n".repeat(5000);
    let mut refused = None;
    for n in 0..20 {
        let deployment = json!({"name": format!("d{n}"), "type": "command", "workdir": "/srv/x",
            "start_script": big_script, "stop_script": big_script});
        let (status, body) = server
            .post("/api/v1/apps/before/deployments", deployment)
            .await;
        if status != StatusCode::CREATED {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.expect("a write failed on the full disk");
    println!("disk full: deployment d{n} refused with {status}: {body}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("disk"),
        "{body}"
    );
    // Reads go on, and the refused write left nothing.
    let shown = server.get("/api/v1/apps/before/deployments").await;
    let names: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(!names.contains(&format!("d{n}").as_str()), "{shown}");
    std::fs::remove_file(filler).unwrap();
    let deployment = json!({"name": format!("d{n}"), "type": "command", "workdir": "/srv/x",
        "start_script": big_script, "stop_script": big_script});
    let (status, body) = server
        .post("/api/v1/apps/before/deployments", deployment)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = server.post("/api/v1/apps", json!({"name": "after"})).await;
    assert_eq!(status, StatusCode::CREATED);
    server.stop().await;
}

#[tokio::test]
async fn a_corrupt_database_refuses_to_start_naming_the_file_and_the_damage() {
    // A file that is not a database at all.
    let (_tmp, dir) = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wharf.db"), vec![0x5a; 8192]).unwrap();
    let config = wharf_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        database: None,
    };
    let err = match wharf_server::bind(config).await {
        Ok(_) => panic!("a server started on a file that is not a database"),
        Err(err) => err,
    };
    let text = error_chain(&err);
    println!("not a database: {text}");
    assert!(
        text.contains(&dir.join("wharf.db").display().to_string()),
        "{text}"
    );
    assert!(text.contains("not a SQLite database"), "{text}");

    // A real database with a damaged page: made by a server, then overwritten
    // in the middle of a table's pages.
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir).await;
    let agents = fleet(&server, 4).await;
    drop(agents);
    server.stop().await;
    let db = dir.join("wharf.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    assert!(bytes.len() > 6 * page, "{} bytes", bytes.len());
    // Every page but the first (the header and schema) gets garbage in its
    // middle: b-tree pages no longer parse.
    for start in (page..bytes.len()).step_by(page) {
        for byte in &mut bytes[start + 100..start + 400] {
            *byte = 0xa5;
        }
    }
    std::fs::write(&db, bytes).unwrap();
    let config = wharf_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        database: None,
    };
    let err = match wharf_server::bind(config).await {
        Ok(_) => panic!("a server started on a damaged database"),
        Err(err) => err,
    };
    let text = error_chain(&err);
    println!("damaged pages: {text}");
    assert!(text.contains("wharf.db"), "{text}");
    assert!(
        text.contains("corrupt") || text.contains("damage"),
        "{text}"
    );
    assert!(text.contains("backup"), "{text}");
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
