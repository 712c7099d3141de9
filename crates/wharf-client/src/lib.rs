//! Typed HTTP client for Wharf's API (`/api/v1/` and `/healthz`), shared by the CLI,
//! the agent and tests. One async method per route, named like the store's methods
//! (`app_create`, `group_fetch`, ...), each returning the wire type of `wharf-api`.
//!
//! The client never prints and never logs; the token it holds is redacted from its
//! `Debug` output and marked sensitive in the request headers.

mod error;
mod path;
mod trust;

pub use error::ClientError;
pub use trust::{ServerTrust, TrustError};

use path::{query, segment};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::time::Duration;
use wharf_api::{
    App, AppCreate, Deployment, DeploymentCreate, ErrorBody, Exec, ExecCreate, Group, GroupCreate,
    GroupInstances, Health, Instance, RegistrationToken, RegistrationTokenCreate, Registry,
    RegistryCreate, RegistryUpdate, Release, ReleaseCreate, ScalingGroup, ScalingGroupCreate,
    StepLog, API_PREFIX,
};

/// The result of every client call.
pub type ClientResult<T> = Result<T, ClientError>;

/// How long a whole request may take unless the builder says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take unless the builder says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an unexpected error body is kept for diagnostics.
const MAX_ERROR_SNIPPET: usize = 512;

/// A client of one Wharf server, cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The base URL without a trailing slash, e.g. `http://127.0.0.1:7700` or
    /// `https://example.com/wharf`; paths are appended to it.
    base_url: String,
    auth: Option<HeaderValue>,
    timeout: Option<Duration>,
    trust: ServerTrust,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("token", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Configures a [`Client`]: token, timeouts and user agent.
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    user_agent: String,
    trust: ServerTrust,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("user_agent", &self.user_agent)
            .field("trust", &self.trust)
            .finish()
    }
}

impl ClientBuilder {
    /// Sends `token` as a bearer token with every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Limits the whole of each request; `None` lets requests wait for ever (for
    /// long polls that carry their own deadline).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limits how long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Replaces the default `wharf-client/VERSION` user agent.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Which roots the server's certificate must chain to (the web PKI unless set).
    pub fn trust(mut self, trust: ServerTrust) -> Self {
        self.trust = trust;
        self
    }

    pub fn build(self) -> ClientResult<Client> {
        let base_url = normalize_base_url(&self.base_url)?;
        let auth = match self.token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ClientError::InvalidToken)?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let mut http = reqwest::Client::builder()
            .user_agent(self.user_agent)
            .connect_timeout(self.connect_timeout)
            // The API never redirects; refusing redirects means the token is only
            // ever sent to the server it was configured for.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(timeout) = self.timeout {
            http = http.timeout(timeout);
        }
        let http = self
            .trust
            .apply(http)
            .map_err(|err| ClientError::InvalidUrl {
                reason: err.to_string(),
            })?;
        let http = http.build().map_err(|err| ClientError::InvalidUrl {
            reason: format!("cannot set up the HTTP client: {err}"),
        })?;
        Ok(Client {
            http,
            base_url,
            auth,
            timeout: self.timeout,
            trust: self.trust,
        })
    }
}

/// Checks that `raw` is an absolute http(s) URL without credentials, query or
/// fragment, and returns it without a trailing slash.
fn normalize_base_url(raw: &str) -> ClientResult<String> {
    let invalid = |reason: String| ClientError::InvalidUrl { reason };
    let url = Url::parse(raw.trim()).map_err(|err| invalid(format!("{raw:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid(format!(
            "{raw:?} must start with http:// or https://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{raw:?} has no host")));
    }
    // The input is deliberately not echoed here: it contains a secret.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "the URL must not contain a user name or password; pass the token separately"
                .to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "{raw:?} must not have a query or fragment"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl Client {
    /// A client with the default timeouts. `base_url` is the server's root, such as
    /// `http://127.0.0.1:7700`; `token` is an API token (not needed for `health`).
    pub fn new(base_url: &str, token: Option<String>) -> ClientResult<Self> {
        let builder = Self::builder(base_url);
        match token {
            Some(token) => builder.token(token).build(),
            None => builder.build(),
        }
    }

    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            token: None,
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("wharf-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            trust: ServerTrust::default(),
        }
    }

    /// The server's root URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether the client sends a token.
    pub fn has_token(&self) -> bool {
        self.auth.is_some()
    }

    // ------------------------------------------------------------ health

    /// `GET /healthz`, which needs no token.
    pub async fn health(&self) -> ClientResult<Health> {
        self.get("/healthz".to_owned()).await
    }

    // ------------------------------------------------------------ registration tokens

    pub async fn registration_token_create(
        &self,
        body: &RegistrationTokenCreate,
    ) -> ClientResult<RegistrationToken> {
        self.post(api("/registration-tokens"), body).await
    }

    pub async fn registration_token_list(&self) -> ClientResult<Vec<RegistrationToken>> {
        self.get(api("/registration-tokens")).await
    }

    pub async fn registration_token_delete(&self, id: &str) -> ClientResult<()> {
        let path = api(&format!(
            "/registration-tokens/{}",
            segment("token id", id)?
        ));
        self.delete(path).await
    }

    // ------------------------------------------------------------ instances

    pub async fn instance_list(&self) -> ClientResult<Vec<Instance>> {
        self.get(api("/instances")).await
    }

    /// Fetches an instance by id (`i-...`) or name.
    pub async fn instance_fetch(&self, id_or_name: &str) -> ClientResult<Instance> {
        self.get(instance_path(id_or_name)?).await
    }

    pub async fn instance_delete(&self, id_or_name: &str) -> ClientResult<()> {
        self.delete(instance_path(id_or_name)?).await
    }

    // ------------------------------------------------------------ applications

    pub async fn app_create(&self, body: &AppCreate) -> ClientResult<App> {
        self.post(api("/apps"), body).await
    }

    pub async fn app_list(&self) -> ClientResult<Vec<App>> {
        self.get(api("/apps")).await
    }

    pub async fn app_fetch(&self, app: &str) -> ClientResult<App> {
        self.get(app_path(app, "")?).await
    }

    pub async fn app_delete(&self, app: &str) -> ClientResult<()> {
        self.delete(app_path(app, "")?).await
    }

    // ------------------------------------------------------------ groups

    pub async fn group_create(&self, app: &str, body: &GroupCreate) -> ClientResult<Group> {
        self.post(app_path(app, "/groups")?, body).await
    }

    pub async fn group_list(&self, app: &str) -> ClientResult<Vec<Group>> {
        self.get(app_path(app, "/groups")?).await
    }

    pub async fn group_fetch(&self, app: &str, group: &str) -> ClientResult<Group> {
        self.get(group_path(app, group, "")?).await
    }

    pub async fn group_delete(&self, app: &str, group: &str) -> ClientResult<()> {
        self.delete(group_path(app, group, "")?).await
    }

    /// Adds instances (by id or name) to a group and returns the updated group.
    pub async fn group_add_instances(
        &self,
        app: &str,
        group: &str,
        body: &GroupInstances,
    ) -> ClientResult<Group> {
        self.post(group_path(app, group, "/instances")?, body).await
    }

    /// Removes instances (by id or name) from a group and returns the updated group.
    pub async fn group_remove_instances(
        &self,
        app: &str,
        group: &str,
        body: &GroupInstances,
    ) -> ClientResult<Group> {
        self.post(group_path(app, group, "/instances/remove")?, body)
            .await
    }

    // ------------------------------------------------------------ scaling groups

    pub async fn scaling_group_create(
        &self,
        body: &ScalingGroupCreate,
    ) -> ClientResult<ScalingGroup> {
        self.post(api("/scaling-groups"), body).await
    }

    pub async fn scaling_group_list(&self) -> ClientResult<Vec<ScalingGroup>> {
        self.get(api("/scaling-groups")).await
    }

    pub async fn scaling_group_fetch(&self, name: &str) -> ClientResult<ScalingGroup> {
        self.get(scaling_group_path(name)?).await
    }

    pub async fn scaling_group_delete(&self, name: &str) -> ClientResult<()> {
        self.delete(scaling_group_path(name)?).await
    }

    // ------------------------------------------------------------ registries

    pub async fn registry_create(&self, body: &RegistryCreate) -> ClientResult<Registry> {
        self.post(api("/registries"), body).await
    }

    pub async fn registry_list(&self) -> ClientResult<Vec<Registry>> {
        self.get(api("/registries")).await
    }

    pub async fn registry_fetch(&self, name: &str) -> ClientResult<Registry> {
        self.get(registry_path(name)?).await
    }

    pub async fn registry_delete(&self, name: &str) -> ClientResult<()> {
        self.delete(registry_path(name)?).await
    }

    /// Changes a registry's endpoints, credentials or `insecure` flag.
    pub async fn registry_update(
        &self,
        name: &str,
        body: &RegistryUpdate,
    ) -> ClientResult<Registry> {
        let (url, response) = self
            .send(Method::PATCH, registry_path(name)?, Some(body))
            .await?;
        self.decode(&url, response).await
    }

    // ------------------------------------------------------------ deployments

    pub async fn deployment_create(
        &self,
        app: &str,
        body: &DeploymentCreate,
    ) -> ClientResult<Deployment> {
        self.post(app_path(app, "/deployments")?, body).await
    }

    pub async fn deployment_list(&self, app: &str) -> ClientResult<Vec<Deployment>> {
        self.get(app_path(app, "/deployments")?).await
    }

    pub async fn deployment_fetch(&self, app: &str, name: &str) -> ClientResult<Deployment> {
        self.get(deployment_path(app, name)?).await
    }

    pub async fn deployment_delete(&self, app: &str, name: &str) -> ClientResult<()> {
        self.delete(deployment_path(app, name)?).await
    }

    // ------------------------------------------------------------ releases

    /// Publishes a deployment to a group; the answer is the new release with its
    /// batches. A group with an active release answers 409 `active_release`, an
    /// empty group 409 `empty_group`.
    pub async fn release_create(
        &self,
        app: &str,
        group: &str,
        body: &ReleaseCreate,
    ) -> ClientResult<Release> {
        self.post(group_path(app, group, "/releases")?, body).await
    }

    /// Publishes the group's previous deployment again; 409 `nothing_to_roll_back`
    /// when there is none.
    pub async fn release_rollback(&self, app: &str, group: &str) -> ClientResult<Release> {
        self.post_empty(group_path(app, group, "/rollback")?).await
    }

    /// Lists releases, newest first, optionally of one application or one group
    /// (a group needs its application). Listed releases have no batches.
    pub async fn release_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: Option<u32>,
    ) -> ClientResult<Vec<Release>> {
        let limit = limit.map(|l| l.to_string());
        let query = query(&[("app", app), ("group", group), ("limit", limit.as_deref())]);
        self.get(api(&format!("/releases{query}"))).await
    }

    /// Fetches a release with its batches, instances and steps.
    pub async fn release_fetch(&self, id: &str) -> ClientResult<Release> {
        self.get(release_path(id, "")?).await
    }

    /// Fetches a release once it differs from the version `after` (from an earlier
    /// answer; `None` answers at once), waiting at most `wait_secs` on the server.
    /// Returns the release and its version, to pass back as `after` next time.
    pub async fn release_follow(
        &self,
        id: &str,
        after: Option<&str>,
        wait_secs: u64,
    ) -> ClientResult<(Release, Option<String>)> {
        let wait = wait_secs.to_string();
        let query = query(&[
            ("after", after),
            ("wait_secs", after.map(|_| wait.as_str())),
        ]);
        let (url, response) = self
            .send(Method::GET, release_path(id, &query)?, None::<&()>)
            .await?;
        let version = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned());
        Ok((self.decode(&url, response).await?, version))
    }

    /// Resumes a paused release; 409 `not_paused` otherwise.
    pub async fn release_continue(&self, id: &str) -> ClientResult<Release> {
        self.post_empty(release_path(id, "/continue")?).await
    }

    /// Cancels a release: no further work is dispatched. 409 `already_finished`
    /// when it has ended.
    pub async fn release_cancel(&self, id: &str) -> ClientResult<Release> {
        self.post_empty(release_path(id, "/cancel")?).await
    }

    /// The output of a release's steps, optionally of one instance (id or name)
    /// and one step. Each log holds the retained tail of the output; its
    /// `dropped_bytes` counts the bytes dropped before that tail.
    pub async fn release_logs(
        &self,
        id: &str,
        instance: Option<&str>,
        step: Option<&str>,
    ) -> ClientResult<Vec<StepLog>> {
        let query = query(&[("instance", instance), ("step", step)]);
        self.get(release_path(id, &format!("/logs{query}"))?).await
    }

    // ------------------------------------------------------------ execs

    /// Runs a script on the instances of a group (a group exec); the answer is the
    /// new exec with its batches. A group with an active release or exec answers
    /// 409 `active_release`, an empty group 409 `empty_group`.
    pub async fn exec_create(
        &self,
        app: &str,
        group: &str,
        body: &ExecCreate,
    ) -> ClientResult<Exec> {
        self.post(group_path(app, group, "/execs")?, body).await
    }

    /// Lists execs, newest first, optionally of one application or one group (a
    /// group needs its application). Listed execs have no batches.
    pub async fn exec_list(
        &self,
        app: Option<&str>,
        group: Option<&str>,
        limit: Option<u32>,
    ) -> ClientResult<Vec<Exec>> {
        let limit = limit.map(|l| l.to_string());
        let query = query(&[("app", app), ("group", group), ("limit", limit.as_deref())]);
        self.get(api(&format!("/execs{query}"))).await
    }

    /// Fetches an exec with its batches, instances and steps.
    pub async fn exec_fetch(&self, id: &str) -> ClientResult<Exec> {
        self.get(exec_path(id, "")?).await
    }

    /// Cancels an exec: instances that have not started are not run on.
    pub async fn exec_cancel(&self, id: &str) -> ClientResult<Exec> {
        self.post_empty(exec_path(id, "/cancel")?).await
    }

    /// The output of an exec on its instances, optionally of one instance (id or
    /// name).
    pub async fn exec_logs(&self, id: &str, instance: Option<&str>) -> ClientResult<Vec<StepLog>> {
        let query = query(&[("instance", instance), ("step", None)]);
        self.get(exec_path(id, &format!("/logs{query}"))?).await
    }

    // ------------------------------------------------------------ plumbing

    async fn get<T: DeserializeOwned>(&self, path: String) -> ClientResult<T> {
        let (url, response) = self.send(Method::GET, path, None::<&()>).await?;
        self.decode(&url, response).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: String,
        body: &B,
    ) -> ClientResult<T> {
        let (url, response) = self.send(Method::POST, path, Some(body)).await?;
        self.decode(&url, response).await
    }

    /// A POST without a body, for actions such as `continue`.
    async fn post_empty<T: DeserializeOwned>(&self, path: String) -> ClientResult<T> {
        let (url, response) = self.send(Method::POST, path, None::<&()>).await?;
        self.decode(&url, response).await
    }

    async fn delete(&self, path: String) -> ClientResult<()> {
        self.send(Method::DELETE, path, None::<&()>).await?;
        Ok(())
    }

    /// Sends one request and returns the response if its status is a success;
    /// otherwise turns the answer into a [`ClientError`].
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> ClientResult<(String, Response)> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self
            .http
            .request(method, &url)
            .header(ACCEPT, "application/json");
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.transport_error(&url, err))?;
        let status = response.status();
        if status.is_success() {
            return Ok((url, response));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(&url, err))?;
        Err(error_from_body(url, status, &bytes))
    }

    async fn decode<T: DeserializeOwned>(&self, url: &str, response: Response) -> ClientResult<T> {
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(url, err))?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            url: url.to_owned(),
            source,
        })
    }

    fn transport_error(&self, url: &str, source: reqwest::Error) -> ClientError {
        let url = url.to_owned();
        if source.is_timeout() {
            ClientError::Timeout {
                url,
                timeout: self.timeout.unwrap_or_default(),
                source,
            }
        } else if let Some(reason) = self.trust.explain(&source) {
            ClientError::Untrusted { url, reason }
        } else if source.is_connect() {
            ClientError::Unreachable { url, source }
        } else {
            ClientError::Transport { url, source }
        }
    }
}

/// Turns a non-success answer into [`ClientError::Api`] when it carries Wharf's
/// error body, and into [`ClientError::UnexpectedStatus`] otherwise.
fn error_from_body(url: String, status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
            field: body.error.field,
        },
        Err(_) => {
            let snippet = &bytes[..bytes.len().min(MAX_ERROR_SNIPPET)];
            ClientError::UnexpectedStatus {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(snippet).into_owned(),
            }
        }
    }
}

fn api(rest: &str) -> String {
    format!("{API_PREFIX}{rest}")
}

fn instance_path(id_or_name: &str) -> ClientResult<String> {
    Ok(api(&format!(
        "/instances/{}",
        segment("instance", id_or_name)?
    )))
}

fn app_path(app: &str, rest: &str) -> ClientResult<String> {
    Ok(api(&format!(
        "/apps/{}{rest}",
        segment("application", app)?
    )))
}

fn group_path(app: &str, group: &str, rest: &str) -> ClientResult<String> {
    app_path(app, &format!("/groups/{}{rest}", segment("group", group)?))
}

fn scaling_group_path(name: &str) -> ClientResult<String> {
    Ok(api(&format!(
        "/scaling-groups/{}",
        segment("scaling group", name)?
    )))
}

fn registry_path(name: &str) -> ClientResult<String> {
    Ok(api(&format!("/registries/{}", segment("registry", name)?)))
}

fn deployment_path(app: &str, name: &str) -> ClientResult<String> {
    app_path(
        app,
        &format!("/deployments/{}", segment("deployment", name)?),
    )
}

fn exec_path(id: &str, rest: &str) -> ClientResult<String> {
    Ok(api(&format!("/execs/{}{rest}", segment("exec id", id)?)))
}

fn release_path(id: &str, rest: &str) -> ClientResult<String> {
    Ok(api(&format!(
        "/releases/{}{rest}",
        segment("release id", id)?
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalized() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:7700/").unwrap(),
            "http://127.0.0.1:7700"
        );
        assert_eq!(
            normalize_base_url(" https://example.com/wharf/ ").unwrap(),
            "https://example.com/wharf"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for raw in [
            "",
            "127.0.0.1:7700",
            "localhost:7700",
            "ftp://example.com",
            "http://example.com/?a=b",
            "http://example.com/#x",
            "unix:/tmp/sock",
        ] {
            assert!(
                matches!(normalize_base_url(raw), Err(ClientError::InvalidUrl { .. })),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let err = normalize_base_url("http://admin:hunter2@example.com").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_redacts_the_token() {
        let client = Client::new("http://127.0.0.1:1", Some("sekrit-token".into())).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("sekrit-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let builder = Client::builder("http://127.0.0.1:1").token("sekrit-token");
        assert!(!format!("{builder:?}").contains("sekrit-token"));
    }

    #[test]
    fn a_token_with_a_newline_is_refused() {
        assert!(matches!(
            Client::new("http://127.0.0.1:1", Some("a\nb".into())),
            Err(ClientError::InvalidToken)
        ));
    }

    #[test]
    fn error_bodies_are_decoded() {
        let body =
            br#"{"error":{"code":"invalid_field","message":"must be absolute","field":"workdir"}}"#;
        let err = error_from_body("u".into(), StatusCode::BAD_REQUEST, body);
        match &err {
            ClientError::Api {
                status,
                code,
                message,
                field,
            } => {
                assert_eq!(*status, 400);
                assert_eq!(code, "invalid_field");
                assert_eq!(message, "must be absolute");
                assert_eq!(field.as_deref(), Some("workdir"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.to_string(), "must be absolute (field: workdir)");

        let err = error_from_body("u".into(), StatusCode::BAD_GATEWAY, b"<html>oops</html>");
        assert!(matches!(
            err,
            ClientError::UnexpectedStatus { status: 502, .. }
        ));
        assert!(err.is_transient());
    }
}
