//! The agent's side of the agent protocol (`/agent/v1/`): one small HTTP client for
//! registration, heartbeats, the long poll for work and step reports.
//!
//! Every request carries the protocol version header. After registration every request
//! also carries the agent's credential as a bearer token; the header value is marked
//! sensitive and `Debug` never shows it. Nothing here logs or retries: callers decide,
//! with [`LinkError::is_retryable`] and [`LinkError::is_unauthorized`].
//!
//! Redirects are not followed: the agent protocol has none, and the verify step (which
//! shares this client through [`Link::http`]) checks the status the URL itself answers.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use wharf_api::agent::{
    AgentHeartbeat, AgentHeartbeatAck, AgentRegister, AgentRegistered, DockerStatus,
    AGENT_PROTOCOL_VERSION, PROTOCOL_HEADER,
};
use wharf_api::{ErrorBody, StepEvent, StepEventAck, WorkAssignment};
use wharf_client::ServerTrust;

/// Seconds the server is asked to hold a poll open when there is no work.
pub const POLL_WAIT_SECS: u64 = 25;
/// The whole-request timeout of a poll, comfortably above [`POLL_WAIT_SECS`].
pub const POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// The whole-request timeout of registration and step reports.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole-request timeout of a heartbeat (kept below the heartbeat interval).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an unexpected (non-JSON) error body is kept for the message.
const MAX_ERROR_SNIPPET: usize = 300;

/// Why a request to the server did not get the answer it wanted.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No answer: the connection failed, broke or timed out.
    #[error("cannot reach the server at {server}: {cause}")]
    Unreachable { server: String, cause: String },
    /// The server (or a proxy in front of it) failed: 5xx, or 429 (busy), with
    /// the time it asked to be left alone (`Retry-After`, in seconds) if it did.
    #[error("the server failed ({status}): {message}")]
    ServerFailed {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The server refused the request (4xx, except 429) with its error body.
    #[error("the server refused the request ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// An answer that fits nothing the protocol says (a redirect, a body that is not the
    /// expected JSON).
    #[error("unexpected answer from the server: {0}")]
    Unexpected(String),
    /// The TLS handshake failed on the server's certificate: not signed by the CA
    /// the agent trusts, expired, or for another name.
    #[error("refusing the server at {server}: {reason}")]
    Untrusted { server: String, reason: String },
}

impl LinkError {
    /// Whether trying again later may succeed: no answer, or a server-side failure.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LinkError::Unreachable { .. } | LinkError::ServerFailed { .. }
        )
    }

    /// Whether the server rejected the agent's credential (401): the instance was deleted
    /// or its credential revoked. Retrying cannot help.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, LinkError::Refused { status: 401, .. })
    }

    /// How long the server asked to wait before trying again (`Retry-After` of a
    /// 503 or 429), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LinkError::ServerFailed { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status of a refusal, if this is one.
    pub fn refused_status(&self) -> Option<u16> {
        match self {
            LinkError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message (for refusals and failures) or the whole error.
    pub fn server_message(&self) -> String {
        match self {
            LinkError::Refused { message, .. } | LinkError::ServerFailed { message, .. } => {
                message.clone()
            }
            other => other.to_string(),
        }
    }
}

/// A client of one Wharf server's agent protocol; cheap to clone (the connection pool
/// is shared).
#[derive(Clone)]
pub struct Link {
    http: reqwest::Client,
    /// For the verify step's probes of deployed apps: the web PKI's roots, not the
    /// server's CA.
    probe_http: reqwest::Client,
    trust: ServerTrust,
    base: Url,
    auth: Option<HeaderValue>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("server", &self.base.as_str())
            .field("credential", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Parses and normalises a server URL: `http` or `https`, no query or fragment, no
/// trailing slash. Returns the reason when it is not usable.
pub fn normalize_server_url(server: &str) -> Result<String, String> {
    let url = parse_server_url(server)?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn parse_server_url(server: &str) -> Result<Url, String> {
    let mut url = Url::parse(server.trim()).map_err(|err| err.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it must not contain a user name or password".to_owned());
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

impl Link {
    /// A client of the server at `server` (`http[s]://host[:port][/prefix]`), without a
    /// credential yet.
    pub fn new(server: &str, user_agent: &str) -> Result<Self, LinkError> {
        Self::with_trust(server, user_agent, ServerTrust::WebPki)
    }

    /// [`Link::new`] verifying the server's certificate against `trust`'s roots (the
    /// one place the agent's roots are chosen; a registration token's CA pin would
    /// come in here too).
    pub fn with_trust(
        server: &str,
        user_agent: &str,
        trust: ServerTrust,
    ) -> Result<Self, LinkError> {
        let base = parse_server_url(server).map_err(|reason| {
            LinkError::Unexpected(format!("invalid server URL {server:?}: {reason}"))
        })?;
        let setup_failed = |err: &(dyn std::error::Error + 'static)| {
            LinkError::Unexpected(format!(
                "cannot set up the HTTP client: {}",
                crate::error_chain(err)
            ))
        };
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(user_agent)
        };
        let http = trust
            .apply(builder())
            .map_err(|err| setup_failed(&err))?
            .build()
            .map_err(|err| setup_failed(&err))?;
        let probe_http = builder().build().map_err(|err| setup_failed(&err))?;
        Ok(Self {
            http,
            probe_http,
            trust,
            base,
            auth: None,
        })
    }

    /// The same client, presenting `credential` as a bearer token from now on.
    pub fn with_credential(&self, credential: &str) -> Result<Self, LinkError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {credential}")).map_err(|_| {
            LinkError::Unexpected("the agent credential is not a valid header value".to_owned())
        })?;
        value.set_sensitive(true);
        Ok(Self {
            http: self.http.clone(),
            probe_http: self.probe_http.clone(),
            trust: self.trust.clone(),
            base: self.base.clone(),
            auth: Some(value),
        })
    }

    /// The server's base URL (normalised, without a trailing slash).
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// An HTTP client for the verify step's probes of deployed apps: the web PKI's
    /// roots (not the server's CA) and no credential.
    pub fn probe_http(&self) -> &reqwest::Client {
        &self.probe_http
    }

    /// `POST /agent/v1/register`.
    pub async fn register(&self, body: &AgentRegister) -> Result<AgentRegistered, LinkError> {
        let request = self
            .request(Method::POST, &["register"])
            .timeout(REQUEST_TIMEOUT)
            .json(body);
        let response = self.send(request).await?;
        self.json(response).await
    }

    /// `POST /agent/v1/heartbeat`, with the host's Docker Engine status when known.
    pub async fn heartbeat(
        &self,
        agent_version: &str,
        docker: Option<DockerStatus>,
    ) -> Result<AgentHeartbeatAck, LinkError> {
        let body = AgentHeartbeat {
            agent_version: agent_version.to_owned(),
            docker,
        };
        let request = self
            .request(Method::POST, &["heartbeat"])
            .timeout(HEARTBEAT_TIMEOUT)
            .json(&body);
        let response = self.send(request).await?;
        self.json(response).await
    }

    /// `POST /agent/v1/deregister`: the instance is deleted on the server.
    pub async fn deregister(&self) -> Result<(), LinkError> {
        let request = self
            .request(Method::POST, &["deregister"])
            .timeout(REQUEST_TIMEOUT);
        self.send(request).await?;
        Ok(())
    }

    /// `GET /agent/v1/work?wait_secs=N`: the next task, or `None` when none came within
    /// the wait.
    pub async fn poll(&self, wait_secs: u64) -> Result<Option<WorkAssignment>, LinkError> {
        let mut request = self.request(Method::GET, &["work"]);
        request = request
            .query(&[("wait_secs", wait_secs)])
            .timeout(POLL_TIMEOUT.max(Duration::from_secs(wait_secs + 15)));
        let response = self.send(request).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        self.json(response).await.map(Some)
    }

    /// `POST /agent/v1/releases/{release_id}/events`.
    pub async fn event(
        &self,
        release_id: &str,
        event: &StepEvent,
    ) -> Result<StepEventAck, LinkError> {
        let request = self
            .request(Method::POST, &["releases", release_id, "events"])
            .timeout(REQUEST_TIMEOUT)
            .json(event);
        let response = self.send(request).await?;
        self.json(response).await
    }

    /// A request to `/agent/v1/<segments...>`; each segment is percent-encoded.
    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        // An http(s) URL always has path segments; `parse_server_url` checked the scheme.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["agent", "v1"]).extend(segments);
        }
        let mut request = self
            .http
            .request(method, url)
            .header(PROTOCOL_HEADER, AGENT_PROTOCOL_VERSION.to_string());
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        request
    }

    /// Sends a request; any answer but 2xx becomes an error.
    async fn send(&self, request: RequestBuilder) -> Result<Response, LinkError> {
        let response = request.send().await.map_err(|err| self.unreachable(err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_status = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        if status.is_redirection() {
            let target = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nowhere");
            return Err(LinkError::Unexpected(format!(
                "the server redirects ({status}) to {target}; give the agent the final server URL"
            )));
        }
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
        if retry_status {
            let message = match parsed {
                Some(body) => body.error.message,
                None => snippet(&body, status),
            };
            return Err(LinkError::ServerFailed {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        Err(match parsed {
            Some(body) => LinkError::Refused {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
                field: body.error.field,
            },
            None => LinkError::Refused {
                status: status.as_u16(),
                code: "unknown".to_owned(),
                message: snippet(&body, status),
                field: None,
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, response: Response) -> Result<T, LinkError> {
        let body = response
            .bytes()
            .await
            .map_err(|err| self.unreachable(err))?;
        serde_json::from_slice(&body).map_err(|err| {
            LinkError::Unexpected(format!(
                "the answer is not what this agent understands ({err}); are agent and server versions compatible?"
            ))
        })
    }

    fn unreachable(&self, err: reqwest::Error) -> LinkError {
        if let Some(reason) = self.trust.explain(&err) {
            return LinkError::Untrusted {
                server: self.server().to_owned(),
                reason,
            };
        }
        let cause = if err.is_timeout() {
            "no answer in time".to_owned()
        } else {
            crate::error_chain(&err.without_url())
        };
        LinkError::Unreachable {
            server: self.server().to_owned(),
            cause,
        }
    }
}

/// The `Retry-After` header in its delta-seconds form (the form Wharf's server
/// sends); an HTTP date or anything else is ignored.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A short, printable excerpt of an unexpected body.
fn snippet(body: &[u8], status: StatusCode) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("status {status} without an explanation");
    }
    let mut cut = text.len().min(MAX_ERROR_SNIPPET);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let ellipsis = if cut < text.len() { "..." } else { "" };
    format!("status {status}: {}{ellipsis}", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised_and_checked() {
        assert_eq!(
            normalize_server_url("http://127.0.0.1:7700/").as_deref(),
            Ok("http://127.0.0.1:7700")
        );
        assert_eq!(
            normalize_server_url(" https://example.com/wharf/?x=1#f ").as_deref(),
            Ok("https://example.com/wharf")
        );
        assert!(normalize_server_url("ftp://example.com").is_err());
        assert!(normalize_server_url("example.com").is_err());
        assert!(normalize_server_url("http://user:pw@example.com").is_err());
    }

    #[test]
    fn request_paths_keep_a_prefix_and_encode_segments() {
        let link = Link::new("https://example.com/wharf/", "test").expect("link");
        let request = link
            .request(Method::POST, &["releases", "r-1/../x", "events"])
            .build()
            .expect("request");
        assert_eq!(
            request.url().as_str(),
            "https://example.com/wharf/agent/v1/releases/r-1%2F..%2Fx/events"
        );
        assert_eq!(
            request
                .headers()
                .get(PROTOCOL_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
        assert!(request.headers().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn the_credential_is_sent_but_never_shown() {
        let link = Link::new("http://127.0.0.1:1", "test")
            .and_then(|l| l.with_credential("wac_secret-credential"))
            .expect("link");
        let text = format!("{link:?}");
        assert!(!text.contains("secret-credential"), "{text}");
        let request = link
            .request(Method::GET, &["work"])
            .build()
            .expect("request");
        let auth = request.headers().get(AUTHORIZATION).expect("auth header");
        assert!(auth.is_sensitive());
        assert_eq!(auth.to_str().ok(), Some("Bearer wac_secret-credential"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retryable() {
        // Port 1 on loopback: nothing listens there.
        let link = Link::new("http://127.0.0.1:1", "test").expect("link");
        let err = link.heartbeat("0.0.0", None).await.expect_err("no server");
        assert!(err.is_retryable(), "{err}");
        assert!(!err.is_unauthorized());
        assert!(err.to_string().contains("http://127.0.0.1:1"), "{err}");
    }

    /// A server that answers every request with `status` and `headers`, once.
    async fn answering_once(status: &'static str, headers: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 8192];
            let _ = conn.read(&mut request).await;
            let body = r#"{"error":{"code":"unavailable","message":"busy"}}"#;
            let answer = format!(
                "HTTP/1.1 {status}\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        });
        url
    }

    #[tokio::test]
    async fn a_busy_server_names_when_to_come_back() {
        let url = answering_once("503 Service Unavailable", "retry-after: 7\r\n").await;
        let link = Link::new(&url, "test").expect("link");
        let err = link.heartbeat("0.0.0", None).await.expect_err("busy");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err:?}");
        assert_eq!(err.server_message(), "busy");

        let url = answering_once("502 Bad Gateway", "").await;
        let link = Link::new(&url, "test").expect("link");
        let err = link.heartbeat("0.0.0", None).await.expect_err("failed");
        assert_eq!(err.retry_after(), None, "{err:?}");
    }

    #[test]
    fn snippets_are_short() {
        let long = "x".repeat(1000);
        let text = snippet(long.as_bytes(), StatusCode::BAD_GATEWAY);
        assert!(text.len() < 400 && text.ends_with("..."), "{text}");
        assert!(snippet(b"", StatusCode::BAD_GATEWAY).contains("without an explanation"));
    }
}
