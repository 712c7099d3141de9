//! A real `wharf server` process on 127.0.0.1 for one measurement, and a small admin
//! client over its HTTP API for the setup the measurements need.

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use wharf_testkit::fleet_server::WharfServer;

/// The longest one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server with its data directory; both go away on drop.
pub struct Running {
    pub server: WharfServer,
    pub api: Api,
    // Kept last so that the directory outlives the process.
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts `wharf server --listen 127.0.0.1:0` on a fresh data directory.
    pub async fn start(wharf: &Path) -> anyhow::Result<Running> {
        let dir = tempfile::Builder::new()
            .prefix("wharf-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let listen: SocketAddr = "127.0.0.1:0".parse()?;
        let server =
            WharfServer::start(wharf, &dir.path().join("data"), dir.path(), listen).await?;
        let api = Api::new(server.local_url(), server.admin_token()?)?;
        Ok(Running {
            server,
            api,
            _dir: dir,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.server.pid().context("the server is not running")
    }

    /// A directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Running {
    /// Keeps the server's log of the last run (the data directory goes), to read
    /// after a failure: `$TMPDIR/wharf-bench-server.log`.
    fn drop(&mut self) {
        let kept = std::env::temp_dir().join("wharf-bench-server.log");
        let _ = std::fs::copy(self.server.log_path(), kept);
    }
}

/// The admin API of one server.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(url: String, token: String) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Api { url, token, http })
    }

    /// POSTs `body` and returns the answer, failing on anything but 2xx.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        answer(self.send_post(path, body).await?, path).await
    }

    /// POSTs `body` and returns the answer's bytes, failing on anything but 2xx:
    /// for an answer of which only a part is wanted.
    pub async fn post_bytes(&self, path: &str, body: Value) -> anyhow::Result<impl AsRef<[u8]>> {
        bytes_of(self.send_post(path, body).await?, "POST", path).await
    }

    /// GETs `path` and returns the answer, failing on anything but 2xx.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        answer(self.send_get(path).await?, path).await
    }

    /// GETs `path` into `body` (emptied first), failing on anything but 2xx: for
    /// timing a read without the time this process then spends parsing it. The
    /// body is read chunk by chunk into `body`, whose memory a caller reading the
    /// same large answer over and over keeps: a new buffer of 9 MB for every
    /// read is memory the kernel must find and zero each time (in this process,
    /// on the cores the server is measured on, within the read's timing).
    pub async fn get_into(&self, path: &str, body: &mut Vec<u8>) -> anyhow::Result<()> {
        let mut response = successful(self.send_get(path).await?, "GET", path).await?;
        body.clear();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("GET {path}"))?
        {
            body.extend_from_slice(&chunk);
        }
        Ok(())
    }

    async fn send_post(&self, path: &str, body: Value) -> anyhow::Result<reqwest::Response> {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))
    }

    async fn send_get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))
    }

    /// A registration token for `uses` agents.
    pub async fn registration_token(&self, uses: usize) -> anyhow::Result<String> {
        let token = self
            .post(
                "/api/v1/registration-tokens",
                json!({"uses": uses, "ttl_secs": 3600}),
            )
            .await?;
        token["token"]
            .as_str()
            .map(str::to_owned)
            .context("the registration token answer has no token")
    }

    /// Creates app `app`, its group `group`, and puts `instances` (ids) into the group.
    pub async fn app_with_group(
        &self,
        app: &str,
        group: &str,
        instances: &[String],
    ) -> anyhow::Result<()> {
        self.post("/api/v1/apps", json!({"name": app})).await?;
        self.post(
            &format!("/api/v1/apps/{app}/groups"),
            json!({"name": group}),
        )
        .await?;
        for chunk in instances.chunks(10_000) {
            self.post(
                &format!("/api/v1/apps/{app}/groups/{group}/instances"),
                json!({"instances": chunk}),
            )
            .await?;
        }
        Ok(())
    }
}

/// `response` if it is a 2xx; otherwise an error with its status and body.
async fn successful(
    response: reqwest::Response,
    method: &str,
    path: &str,
) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("{method} {path} answered {status}: {text}");
    }
    Ok(response)
}

/// The body of `response` as bytes, failing on anything but 2xx (with the answer
/// in the error).
async fn bytes_of(
    response: reqwest::Response,
    method: &str,
    path: &str,
) -> anyhow::Result<impl AsRef<[u8]>> {
    successful(response, method, path)
        .await?
        .bytes()
        .await
        .with_context(|| format!("{method} {path}"))
}

async fn answer(response: reqwest::Response, path: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{path} answered {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{path} answered non-JSON"))
}

/// Milliseconds between two RFC 3339 timestamps of a view (`later - earlier`).
pub fn millis_between(earlier: &Value, later: &Value) -> Option<f64> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let (a, b) = (parse(earlier)?, parse(later)?);
    Some((b - a).num_microseconds()? as f64 / 1000.0)
}
