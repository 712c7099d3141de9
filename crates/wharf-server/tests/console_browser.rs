//! The web console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, fantoccini), a real server on port 0 and real agents
//! (`wharf_agent::run`) running `command` deployments with bash.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the tests print
//! why they skip and pass; CI installs both, so there they run.
//!
//! Screenshots go to `target/artifacts/` (the release page while paused and when
//! done), for people to look at.

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::oneshot;
use wharf_server::{bind_with, Liveness, ServerConfig};

/// One browser at a time: two Chromiums and two builds do not fit two cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const EVIL_SCRIPT: &str = "<script>alert(1)</script>";
const EVIL_IMG: &str = "\"><img src=x onerror=alert(1)>";

// ---------------------------------------------------------------- the server

struct Server {
    url: String,
    admin: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(dir: &Path) -> Server {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
            database: None,
        };
        let bound = bind_with(config, Liveness::default()).await.unwrap();
        let url = format!("http://{}", bound.local_addr());
        let admin = std::fs::read_to_string(bound.admin_token_path()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bound
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            url,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the server shuts down promptly, open event streams included")
                .unwrap();
        }
    }

    async fn api_get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `n` instances are online.
    async fn wait_online(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let instances = self.api_get("/api/v1/instances").await;
            let online = instances
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["status"] == "online")
                .count();
            if online >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} agents never came online: {instances:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------- real agents

struct Agent {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    fn start(server: &Server, token: &str, name: &str, state_dir: PathBuf) -> Agent {
        let config = wharf_agent::AgentConfig {
            server: server.url.clone(),
            registration_token: Some(token.to_owned()),
            state_dir,
            name: Some(name.to_owned()),
            labels: BTreeMap::from([("zone".to_owned(), "test".to_owned())]),
            scaling_group: None,
            docker_socket: None,
            trust: Default::default(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = wharf_agent::run(config, shutdown).await {
                panic!("agent {name} stopped: {err}");
            }
        });
        Agent {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

// ---------------------------------------------------------------- the browser

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Chromium under chromedriver, or `None` (with a printed reason) when they are
    /// not installed.
    async fn start() -> Option<Browser> {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let driver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            println!(
                "SKIPPED: the browser tests need Chromium and chromedriver \
                 (Debian: apt-get install chromium chromium-driver); not found on PATH"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never listened on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1440,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with Chromium");
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

/// Runs a browser test body; the browser is closed whatever happens in it.
async fn with_browser<F, Fut>(body: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _one_at_a_time = BROWSER.lock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let client = browser.client.clone();
    let outcome =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body(client))).await;
    browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn find(client: &Client, css: &str) -> Element {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("no element {css}: {err}"))
}

/// Waits until the text of `css` satisfies `ok`; returns it.
async fn wait_text(client: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut last = String::new();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} never showed {what}; last text {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn wait_path(client: &Client, ok: impl Fn(&str) -> bool, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let url = client.current_url().await.unwrap();
        if ok(url.path()) {
            return url.path().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got to {what}; at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Marks the current document; the mark survives only if the page is not reloaded.
async fn mark_document(client: &Client) {
    js(client, "window.__wharfMark = 'same document'; return true;").await;
}

async fn document_is_marked(client: &Client) -> bool {
    js(client, "return window.__wharfMark === 'same document';").await == json!(true)
}

async fn no_alert_is_open(client: &Client) {
    assert!(
        client.get_alert_text().await.is_err(),
        "an alert is open: a script from the data ran"
    );
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    // Full page height, so the whole release shows.
    let height = js(client, "return document.documentElement.scrollHeight;")
        .await
        .as_u64()
        .unwrap_or(1000)
        .clamp(600, 4000) as u32;
    let _ = client.set_window_size(1440, height + 120).await;
    let png = client.screenshot().await.unwrap();
    let path = artifacts_dir().join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

// ---------------------------------------------------------------- console steps

async fn sign_in(client: &Client, server: &Server) {
    client.goto(&format!("{}/", server.url)).await.unwrap();
    wait_path(client, |p| p == "/login", "the sign-in page").await;
    find(client, "#token")
        .await
        .send_keys(&server.admin)
        .await
        .unwrap();
    find(client, "form[action='/login'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_path(client, |p| p == "/", "the overview").await;
    wait_text(client, "h1", "the overview", |t| t.contains("Overview")).await;
}

/// Creates a registration token through the instances page; returns it.
async fn registration_token(client: &Client, server: &Server, uses: u32) -> String {
    client
        .goto(&format!("{}/instances", server.url))
        .await
        .unwrap();
    let field = find(client, "input[name=uses]").await;
    field.clear().await.unwrap();
    field.send_keys(&uses.to_string()).await.unwrap();
    find(client, "form[action='/registration-tokens'] button")
        .await
        .click()
        .await
        .unwrap();
    let token = wait_text(client, "#new-token", "a new token", |t| {
        t.starts_with("wharf_reg_")
    })
    .await;
    let command = find(client, "#agent-command").await.text().await.unwrap();
    assert!(command.contains(&server.url), "{command}");
    token.trim().to_owned()
}

async fn create_app(client: &Client, server: &Server, name: &str, description: &str) {
    client.goto(&format!("{}/apps", server.url)).await.unwrap();
    find(client, "#app-name")
        .await
        .send_keys(name)
        .await
        .unwrap();
    find(client, "#app-description")
        .await
        .send_keys(description)
        .await
        .unwrap();
    find(client, "#new-app button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_path(
        client,
        |p| p == format!("/apps/{name}"),
        "the application page",
    )
    .await;
}

async fn create_group_with_all_instances(client: &Client, app: &str, group: &str, n: usize) {
    find(client, "#group-name")
        .await
        .send_keys(group)
        .await
        .unwrap();
    find(client, "#new-group button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_path(
        client,
        |p| p == format!("/apps/{app}/groups/{group}"),
        "the group page",
    )
    .await;
    let boxes = client
        .find_all(Locator::Css("#add-members input[name=instances]"))
        .await
        .unwrap();
    assert_eq!(boxes.len(), n, "every registered instance can be added");
    for b in boxes {
        b.click().await.unwrap();
    }
    find(client, "#add-members button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = client
            .find_all(Locator::Css("#members tr[data-instance]"))
            .await
            .unwrap();
        if rows.len() == n {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_command_deployment(
    client: &Client,
    server: &Server,
    app: &str,
    name: &str,
    workdir: &Path,
    start_script: &str,
) {
    client
        .goto(&format!("{}/apps/{app}/deployments/new", server.url))
        .await
        .unwrap();
    find(client, "#dep-name")
        .await
        .send_keys(name)
        .await
        .unwrap();
    find(client, "#dep-type")
        .await
        .select_by_value("command")
        .await
        .unwrap();
    // The script hides the image fields of a command deployment.
    assert!(!find(client, "#image-fields")
        .await
        .is_displayed()
        .await
        .unwrap());
    find(client, "#dep-workdir")
        .await
        .send_keys(&workdir.display().to_string())
        .await
        .unwrap();
    find(client, "#dep-stop")
        .await
        .send_keys("echo \"stopping the old version\"")
        .await
        .unwrap();
    find(client, "#dep-start")
        .await
        .send_keys(start_script)
        .await
        .unwrap();
    find(client, "#deployment-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_path(
        client,
        |p| p == format!("/apps/{app}/deployments/{name}"),
        "the deployment page",
    )
    .await;
}

/// Starts a release from the group page's form; returns its id.
async fn start_release(
    client: &Client,
    server: &Server,
    app: &str,
    group: &str,
    deployment: &str,
    batches: u32,
    pause: &str,
) -> String {
    client
        .goto(&format!("{}/apps/{app}/groups/{group}", server.url))
        .await
        .unwrap();
    find(client, "#new-release").await.click().await.unwrap();
    wait_path(client, |p| p.ends_with("/releases/new"), "the release form").await;
    find(client, "#rel-deployment")
        .await
        .select_by_value(deployment)
        .await
        .unwrap();
    let batches_field = find(client, "#rel-batches").await;
    batches_field.clear().await.unwrap();
    batches_field.send_keys(&batches.to_string()).await.unwrap();
    find(client, "#rel-pause")
        .await
        .select_by_value(pause)
        .await
        .unwrap();
    find(client, "#rel-submit").await.click().await.unwrap();
    let path = wait_path(
        client,
        |p| p.starts_with("/releases/r-"),
        "the release page",
    )
    .await;
    path.trim_start_matches("/releases/").to_owned()
}

async fn batch_state(client: &Client, n: u32) -> String {
    match client
        .find(Locator::Css(&format!(
            "#batches [data-batch='{n}'] [data-role=batch-state]"
        )))
        .await
    {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_release_updates_live_and_continues_to_success() {
    with_browser(|client| async move {
        let tmp = tempfile::tempdir().unwrap();
        let server = Server::start(&tmp.path().join("data")).await;
        sign_in(&client, &server).await;

        let token = registration_token(&client, &server, 2).await;
        let agents = vec![
            Agent::start(&server, &token, "web-1", tmp.path().join("agent-1")),
            Agent::start(&server, &token, "web-2", tmp.path().join("agent-2")),
        ];
        server.wait_online(2).await;

        create_app(&client, &server, "shop", "The web shop").await;
        create_group_with_all_instances(&client, "shop", "prod", 2).await;
        create_command_deployment(
            &client,
            &server,
            "shop",
            "v1",
            &tmp.path().join("srv").join("shop"),
            "echo \"starting $WHARF_APP/$WHARF_GROUP on $WHARF_INSTANCE\"\nsleep 3\necho \"shop is up\"",
        )
        .await;
        let id = start_release(&client, &server, "shop", "prod", "v1", 2, "first").await;

        // The page is open while batch 1 runs. From here on it must change by
        // itself: the document is marked, and the mark must still be there.
        mark_document(&client).await;
        let first_state = find(&client, "#release-state").await.text().await.unwrap();
        assert!(
            ["pending", "running"].contains(&first_state.as_str()),
            "the release page opened while batch 1 runs, not {first_state}"
        );
        wait_text(&client, "#release-state", "running", |t| t == "running").await;
        wait_text(
            &client,
            "#batches [data-batch='1'] [data-role=batch-state]",
            "batch 1 running",
            |t| t == "running",
        )
        .await;
        // Steps appear as the agents report them.
        wait_text(
            &client,
            "#batches [data-batch='1'] .steps",
            "the start step",
            |t| t.contains("start"),
        )
        .await;
        assert!(find(&client, "#act-continue").await.attr("hidden").await.unwrap().is_some());

        // Batch 1 finishes: paused, with the continue button, without a reload.
        wait_text(&client, "#release-state", "paused", |t| t == "paused").await;
        assert_eq!(batch_state(&client, 1).await, "succeeded");
        assert_eq!(batch_state(&client, 2).await, "pending");
        assert!(find(&client, "#btn-continue").await.is_displayed().await.unwrap());
        let banner = find(&client, "#release-banner").await.text().await.unwrap();
        assert!(banner.contains("Paused after batch 1 of 2"), "{banner}");
        assert_eq!(
            find(&client, "[data-count=succeeded]").await.text().await.unwrap(),
            "1"
        );
        assert!(
            document_is_marked(&client).await,
            "the page was reloaded; it should have changed through its event stream"
        );

        // The log of batch 1 is there, in order, as text.
        find(&client, "#batches [data-batch='1'] details.logs summary")
            .await
            .click()
            .await
            .unwrap();
        let log = wait_text(
            &client,
            "#batches [data-batch='1'] details.logs",
            "the start log",
            |t| t.contains("shop is up"),
        )
        .await;
        assert!(log.contains("starting shop/prod on i-"), "{log}");
        assert!(log.contains("stopping the old version"), "{log}");
        screenshot(&client, "release-page-paused.png").await;

        // Continue: the form posts, the page comes back and follows batch 2 live.
        find(&client, "#btn-continue").await.click().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while document_is_marked(&client).await {
            assert!(tokio::time::Instant::now() < deadline, "continue did not submit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_path(&client, |p| p == format!("/releases/{id}"), "the release page").await;
        mark_document(&client).await;
        wait_text(&client, "#release-state", "running", |t| t == "running").await;
        wait_text(&client, "#release-state", "succeeded", |t| t == "succeeded").await;
        assert!(document_is_marked(&client).await, "success came through the event stream");
        assert_eq!(batch_state(&client, 1).await, "succeeded");
        assert_eq!(batch_state(&client, 2).await, "succeeded");
        assert_eq!(
            find(&client, "[data-count=succeeded]").await.text().await.unwrap(),
            "2"
        );
        assert!(find(&client, "#act-continue").await.attr("hidden").await.unwrap().is_some());
        assert!(find(&client, "#act-cancel").await.attr("hidden").await.unwrap().is_some());
        let live = wait_text(&client, "#live-status", "the stream's end", |t| t == "finished").await;
        assert_eq!(live, "finished");
        for details in client
            .find_all(Locator::Css("#batches details.logs summary"))
            .await
            .unwrap()
        {
            let open = details
                .find(Locator::XPath(".."))
                .await
                .unwrap()
                .attr("open")
                .await
                .unwrap();
            if open.is_none() {
                details.click().await.unwrap();
            }
        }
        screenshot(&client, "release-page.png").await;

        // The group now runs v1 everywhere.
        client
            .goto(&format!("{}/apps/shop/groups/prod", server.url))
            .await
            .unwrap();
        let facts = find(&client, ".facts").await.text().await.unwrap();
        assert!(facts.contains("v1"), "{facts}");
        assert!(facts.contains("in sync"), "{facts}");
        let page = client.source().await.unwrap();
        assert!(page.contains(&id), "the release is in the group's history");
        screenshot(&client, "group-page.png").await;

        // A refused form shows the API's message next to it and keeps the input.
        client
            .goto(&format!("{}/apps/shop/deployments/new", server.url))
            .await
            .unwrap();
        find(&client, "#dep-name").await.send_keys("v2").await.unwrap();
        find(&client, "#dep-type")
            .await
            .select_by_value("command")
            .await
            .unwrap();
        find(&client, "#dep-workdir")
            .await
            .send_keys("srv/shop")
            .await
            .unwrap();
        find(&client, "#dep-start")
            .await
            .send_keys("echo one\necho two")
            .await
            .unwrap();
        find(&client, "#deployment-form button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        let error = wait_text(&client, ".form-error", "the error", |t| t.contains("workdir")).await;
        assert!(error.contains("workdir: "), "{error}");
        assert_eq!(
            find(&client, "#dep-start").await.prop("value").await.unwrap().as_deref(),
            Some("echo one\necho two")
        );
        assert_eq!(
            find(&client, "#dep-workdir").await.prop("value").await.unwrap().as_deref(),
            Some("srv/shop")
        );
        assert_eq!(
            find(&client, "#dep-workdir").await.attr("class").await.unwrap().as_deref(),
            Some("invalid")
        );
        screenshot(&client, "deployment-form-error.png").await;

        // The other pages, for people to look at.
        for (path, name) in [
            ("/", "overview.png"),
            ("/instances", "instances.png"),
            ("/apps/shop", "app-page.png"),
            ("/apps/shop/deployments/v1", "deployment-page.png"),
        ] {
            client.goto(&format!("{}{path}", server.url)).await.unwrap();
            find(&client, "h1").await;
            screenshot(&client, name).await;
        }

        for agent in agents {
            agent.stop().await;
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn script_injection_is_shown_as_text() {
    with_browser(|client| async move {
        let tmp = tempfile::tempdir().unwrap();
        let server = Server::start(&tmp.path().join("data")).await;
        sign_in(&client, &server).await;
        let token = registration_token(&client, &server, 1).await;
        let agent = Agent::start(&server, &token, "web-1", tmp.path().join("agent-1"));
        server.wait_online(1).await;

        // In an application's description.
        let evil = format!("{EVIL_SCRIPT} and {EVIL_IMG}");
        create_app(&client, &server, "shop", &evil).await;
        let shown = find(&client, "p.description").await.text().await.unwrap();
        assert_eq!(shown, evil, "the description is shown as typed, as text");
        no_alert_is_open(&client).await;
        client.goto(&format!("{}/apps", server.url)).await.unwrap();
        let cell = find(&client, "tr[data-app=shop] td.description")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(cell, evil);
        no_alert_is_open(&client).await;
        assert_eq!(
            js(
                &client,
                "return document.querySelectorAll('img[src=\"x\"], script:not([src])').length;"
            )
            .await,
            json!(0)
        );

        // In a log line, first as it streams in, then as the page renders it.
        client
            .goto(&format!("{}/apps/shop", server.url))
            .await
            .unwrap();
        create_group_with_all_instances(&client, "shop", "prod", 1).await;
        create_command_deployment(
            &client,
            &server,
            "shop",
            "v1",
            &tmp.path().join("srv").join("shop"),
            &format!("echo '{EVIL_SCRIPT}'\nsleep 2\necho '{EVIL_IMG}'"),
        )
        .await;
        start_release(&client, &server, "shop", "prod", "v1", 1, "auto").await;
        mark_document(&client).await;
        wait_text(&client, "#release-state", "succeeded", |t| t == "succeeded").await;
        assert!(document_is_marked(&client).await, "the log arrived live");
        find(&client, "#batches details.logs summary")
            .await
            .click()
            .await
            .unwrap();
        let log = wait_text(
            &client,
            "#batches .log[data-step=start] pre",
            "the start output",
            |t| t.contains("onerror"),
        )
        .await;
        assert_eq!(log.trim_end(), format!("{EVIL_SCRIPT}\n{EVIL_IMG}"));
        no_alert_is_open(&client).await;
        let injected =
            "return document.querySelectorAll('img[src=\"x\"], script:not([src])').length;";
        assert_eq!(js(&client, injected).await, json!(0));

        client.refresh().await.unwrap();
        find(&client, "#batches details.logs summary")
            .await
            .click()
            .await
            .unwrap();
        let log = find(&client, "#batches .log[data-step=start] pre")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(log.trim_end(), format!("{EVIL_SCRIPT}\n{EVIL_IMG}"));
        no_alert_is_open(&client).await;
        assert_eq!(js(&client, injected).await, json!(0));

        agent.stop().await;
        server.stop().await;
    })
    .await;
}
