//! Docker Engine access for the pull step: the [`ContainerRuntime`] seam and the real
//! [`DockerRuntime`] over bollard on the engine's Unix socket.
//!
//! Registry credentials live only in memory: they travel to the engine in the
//! `X-Registry-Auth` header of the pull request and are never written to disk, put on a
//! command line or logged ([`RegistryCredentials`]'s `Debug` hides the password).
//!
//! Bollard 0.18 encodes that header with the standard base64 alphabet, while the engine
//! decodes it with the URL-safe one. For most passwords the two agree; for one whose JSON
//! encoding yields a `+` or `/` in base64 (passwords with `?`, `>` and the like) the engine
//! fails to decode the header and pulls *without* credentials. [`DockerRuntime`] therefore
//! talks to the socket through a bollard custom transport that re-encodes the header with
//! the URL-safe alphabet before the request leaves.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::image::CreateImageOptions;
use bollard::{BollardRequest, ClientVersion, Docker};
use futures::StreamExt;
use http::header::HeaderMap;
use http::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

use crate::output::OutputSink;

/// Where the Docker Engine listens by default.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The API version the agent asks for; older engines are negotiated down to their own.
/// 1.41 is what Debian's docker.io (20.10) speaks, and an engine rejects requests for a
/// version newer than its own, so starting from bollard's default (1.47) would fail there.
const CLIENT_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Seconds bollard waits for the engine's response headers on each request.
const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 120;

/// Credentials for one registry. They are only ever held in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The registry's address as in the image reference, for example `registry.example:5000`.
    pub server_address: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("server_address", &self.server_address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The engine's version, as reported by `GET /version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineVersion {
    /// The engine's release, for example `20.10.24+dfsg1`.
    pub version: String,
    /// The highest API version the engine speaks, for example `1.41`.
    pub api_version: String,
}

/// Errors of [`ContainerRuntime`] operations. Each says what failed in words fit for a
/// step report; engine messages are included as they came.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// Nothing answers on the engine's socket.
    #[error(
        "Docker Engine not reachable at {socket}: {cause} — is docker running? Install and start Docker Engine on this host"
    )]
    EngineUnreachable { socket: String, cause: String },
    /// The registry has no such repository, tag or digest.
    #[error("image {image} not found: {message}")]
    ImageNotFound { image: String, message: String },
    /// The registry refused the credentials (or wanted some and got none).
    #[error("registry authentication failed for {image}: {message}")]
    AuthenticationFailed { image: String, message: String },
    /// The pull did not finish in time.
    #[error("pulling {image} did not finish within {} s", timeout.as_secs_f64())]
    Timeout { image: String, timeout: Duration },
    /// The image reference cannot be pulled as written.
    #[error("invalid image reference {image:?}: {reason}")]
    InvalidReference { image: String, reason: &'static str },
    /// The pull succeeded but the engine lists no digest for the pulled repository.
    #[error("pulled {image} but the engine lists no digest for repository {repository}")]
    DigestMissing { image: String, repository: String },
    /// Any other failure reported by the engine or on the way to it.
    #[error("Docker Engine request failed ({operation}): {message}")]
    Engine {
        operation: &'static str,
        message: String,
    },
}

/// What the agent needs from a container engine. The agent uses [`DockerRuntime`]; tests
/// of higher tiers can use a fake.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Checks that the engine answers and returns its version.
    async fn ping(&self) -> Result<EngineVersion, DockerError>;

    /// Pulls `image_ref` (`host[:port]/path[:tag|@digest]`; no tag means `latest`) with the
    /// given credentials, writing the engine's status lines to `output`, and returns the
    /// image's repository digest (`sha256:...`) for the reference's repository.
    async fn pull(
        &self,
        image_ref: &str,
        credentials: Option<&RegistryCredentials>,
        timeout: Duration,
        output: &OutputSink,
    ) -> Result<String, DockerError>;

    /// The repository digest of `image_ref` if the engine holds the image, else `None`.
    async fn image_digest(&self, image_ref: &str) -> Result<Option<String>, DockerError>;
}

/// The Docker Engine on a Unix socket, through bollard.
#[derive(Clone, Debug)]
pub struct DockerRuntime {
    docker: Docker,
    socket: PathBuf,
    negotiated: Arc<AtomicBool>,
}

impl DockerRuntime {
    /// A runtime for the engine at `socket`. Nothing is contacted yet: the API version is
    /// negotiated on first use, so that the agent can start while the engine is down.
    pub fn new(socket: impl Into<PathBuf>) -> Result<Self, DockerError> {
        let socket = socket.into();
        let client = Arc::new(
            Client::builder(TokioExecutor::new())
                // Bollard's own Unix transport keeps no idle connections either.
                .pool_max_idle_per_host(0)
                .build(UnixConnector),
        );
        let transport = move |request: BollardRequest| {
            let client = Arc::clone(&client);
            async move {
                let (mut parts, body) = request.into_parts();
                reencode_registry_auth(&mut parts.headers);
                client
                    .request(BollardRequest::from_parts(parts, body))
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        };
        // hyperlocal's connector finds the socket path hex-encoded in the URI's host.
        let address = format!(
            "unix://{}",
            hex_encode(socket.as_os_str().as_encoded_bytes())
        );
        let docker = Docker::connect_with_custom_transport(
            transport,
            Some(address),
            DEFAULT_REQUEST_TIMEOUT_SECS,
            &CLIENT_API_VERSION,
        )
        .map_err(|err| DockerError::Engine {
            operation: "connect",
            message: err.to_string(),
        })?;
        Ok(Self {
            docker,
            socket,
            negotiated: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A runtime for the engine at [`DEFAULT_DOCKER_SOCKET`].
    pub fn with_default_socket() -> Result<Self, DockerError> {
        Self::new(DEFAULT_DOCKER_SOCKET)
    }

    /// The engine socket this runtime talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Negotiates the API version once. Clones of a bollard `Docker` share their version,
    /// so negotiating on a clone sets it for `self.docker` too.
    async fn ensure_negotiated(&self) -> Result<(), DockerError> {
        if self.negotiated.load(Ordering::Acquire) {
            return Ok(());
        }
        self.check_socket()?;
        self.docker
            .clone()
            .negotiate_version()
            .await
            .map_err(|err| self.classify(err, "negotiate API version", None))?;
        self.negotiated.store(true, Ordering::Release);
        Ok(())
    }

    /// Fails fast, with the clear message, when there is no socket file at all.
    fn check_socket(&self) -> Result<(), DockerError> {
        match std::fs::metadata(&self.socket) {
            Ok(_) => Ok(()),
            Err(err) => Err(DockerError::EngineUnreachable {
                socket: self.socket.display().to_string(),
                cause: err.to_string(),
            }),
        }
    }

    /// Maps a bollard error to a [`DockerError`]; `image` is set for pull-related requests.
    fn classify(
        &self,
        err: bollard::errors::Error,
        operation: &'static str,
        image: Option<&str>,
    ) -> DockerError {
        use bollard::errors::Error as B;
        let unreachable = |cause: String| DockerError::EngineUnreachable {
            socket: self.socket.display().to_string(),
            cause,
        };
        match err {
            B::HyperLegacyError { err } if err.is_connect() => unreachable(error_chain(&err)),
            B::IOError { err } => unreachable(err.to_string()),
            B::SocketNotFoundError(path) => unreachable(format!("no socket at {path}")),
            B::RequestTimeoutError => DockerError::Engine {
                operation,
                message: format!(
                    "no response within {DEFAULT_REQUEST_TIMEOUT_SECS} s (the engine may be overloaded)"
                ),
            },
            B::DockerResponseServerError {
                status_code,
                message,
            } => match image {
                Some(image) => classify_pull_message(image, Some(status_code), message),
                None => DockerError::Engine {
                    operation,
                    message: format!("status {status_code}: {message}"),
                },
            },
            B::DockerStreamError { error } => match image {
                Some(image) => classify_pull_message(image, None, error),
                None => DockerError::Engine {
                    operation,
                    message: error,
                },
            },
            other => DockerError::Engine {
                operation,
                message: error_chain(&other),
            },
        }
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn ping(&self) -> Result<EngineVersion, DockerError> {
        self.ensure_negotiated().await?;
        let version = self
            .docker
            .version()
            .await
            .map_err(|err| self.classify(err, "version", None))?;
        Ok(EngineVersion {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
        })
    }

    async fn pull(
        &self,
        image_ref: &str,
        credentials: Option<&RegistryCredentials>,
        timeout: Duration,
        output: &OutputSink,
    ) -> Result<String, DockerError> {
        let reference = ImageRef::parse(image_ref)?;
        let pull = async {
            self.ensure_negotiated().await?;
            let options = CreateImageOptions {
                from_image: reference.repository.clone(),
                // Without a tag the engine would pull every tag of the repository.
                tag: reference.tag_or_digest().to_owned(),
                ..Default::default()
            };
            let credentials = credentials.map(|c| DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.clone()),
                serveraddress: Some(c.server_address.clone()),
                ..Default::default()
            });
            let mut progress = self.docker.create_image(Some(options), None, credentials);
            while let Some(item) = progress.next().await {
                let info = item.map_err(|err| self.classify(err, "pull", Some(image_ref)))?;
                // Per-layer byte counts would flood the output; keep the status lines.
                if let (Some(status), None) = (info.status, info.progress) {
                    let line = match info.id {
                        Some(id) => format!("{id}: {status}"),
                        None => status,
                    };
                    output.push_line(line.as_bytes());
                }
            }
            Ok::<_, DockerError>(())
        };
        tokio::time::timeout(timeout, pull)
            .await
            .map_err(|_elapsed| DockerError::Timeout {
                image: image_ref.to_owned(),
                timeout,
            })??;

        self.image_digest(image_ref)
            .await?
            .ok_or_else(|| DockerError::DigestMissing {
                image: image_ref.to_owned(),
                repository: reference.repository.clone(),
            })
    }

    async fn image_digest(&self, image_ref: &str) -> Result<Option<String>, DockerError> {
        let reference = ImageRef::parse(image_ref)?;
        self.ensure_negotiated().await?;
        let inspect = match self.docker.inspect_image(image_ref).await {
            Ok(inspect) => inspect,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(err) => return Err(self.classify(err, "inspect image", None)),
        };
        let digest = inspect
            .repo_digests
            .unwrap_or_default()
            .iter()
            .filter_map(|entry| entry.split_once('@'))
            .find(|(repository, _)| same_repository(repository, &reference.repository))
            .map(|(_, digest)| digest.to_owned());
        Ok(digest)
    }
}

/// An image reference split into repository and tag or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ImageRef {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    fn parse(image: &str) -> Result<Self, DockerError> {
        let invalid = |reason| DockerError::InvalidReference {
            image: image.to_owned(),
            reason,
        };
        if image.is_empty() {
            return Err(invalid("it is empty"));
        }
        if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace"));
        }
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) if digest.starts_with("sha256:") => {
                (name, Some(digest.to_owned()))
            }
            Some(_) => return Err(invalid("a digest must start with sha256:")),
            None => (image, None),
        };
        // A colon after the last slash separates the tag; one before it is a registry port.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_owned()),
            ),
            None => (name, None),
        };
        if repository.is_empty() || repository.ends_with('/') || tag.as_deref() == Some("") {
            return Err(invalid("it needs a repository name and a non-empty tag"));
        }
        Ok(Self {
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }

    /// What goes in the pull's `tag` parameter; the engine also accepts a digest there.
    fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// Whether two repository names are the same once Docker Hub's implicit prefixes are
/// ignored (the engine lists `busybox@...` for an image pulled as `docker.io/library/busybox`).
fn same_repository(a: &str, b: &str) -> bool {
    fn short(name: &str) -> &str {
        let name = name.strip_prefix("docker.io/").unwrap_or(name);
        name.strip_prefix("library/").unwrap_or(name)
    }
    short(a) == short(b)
}

/// Sorts an engine message about a pull into not found, authentication failed, or other.
fn classify_pull_message(image: &str, status: Option<u16>, message: String) -> DockerError {
    let lower = message.to_lowercase();
    let auth = [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
        || matches!(status, Some(401 | 403));
    let not_found = [
        "not found",
        "manifest unknown",
        "name unknown",
        "does not exist",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
        || status == Some(404);
    if auth {
        DockerError::AuthenticationFailed {
            image: image.to_owned(),
            message,
        }
    } else if not_found {
        DockerError::ImageNotFound {
            image: image.to_owned(),
            message,
        }
    } else {
        DockerError::Engine {
            operation: "pull",
            message,
        }
    }
}

/// Re-encodes bollard's standard-base64 `X-Registry-Auth` header in the URL-safe alphabet
/// (with padding) that the engine decodes. A value that is not standard base64 is left as
/// it is.
fn reencode_registry_auth(headers: &mut HeaderMap) {
    let Some(value) = headers.get("x-registry-auth") else {
        return;
    };
    let Ok(decoded) = STANDARD.decode(value.as_bytes()) else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&URL_SAFE.encode(decoded)) {
        headers.insert("x-registry-auth", value);
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::error_chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let credentials = RegistryCredentials {
            server_address: "registry.example:5000".into(),
            username: "deploy".into(),
            password: "hunter2-secret".into(),
        };
        let text = format!("{credentials:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(
            text.contains("deploy") && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn registry_auth_header_is_reencoded_url_safe() {
        let payload = r#"{"username":"u","password":"p?a>s/s+w=o\"r' d"}"#;
        let standard = STANDARD.encode(payload);
        assert!(
            standard.contains('+') || standard.contains('/'),
            "the test payload must exercise the differing characters: {standard}"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-registry-auth",
            HeaderValue::from_str(&standard).expect("base64 is a valid header value"),
        );
        reencode_registry_auth(&mut headers);
        let value = headers
            .get("x-registry-auth")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(!value.contains('+') && !value.contains('/'), "{value}");
        assert_eq!(
            URL_SAFE.decode(&value).ok(),
            Some(payload.as_bytes().to_vec())
        );
    }

    #[test]
    fn image_references_split_into_repository_and_tag_or_digest() {
        let parsed = |s: &str| {
            ImageRef::parse(s).map(|r| (r.repository.clone(), r.tag_or_digest().to_owned()))
        };
        assert_eq!(
            parsed("127.0.0.1:5000/team/app:1.2").ok(),
            Some(("127.0.0.1:5000/team/app".into(), "1.2".into()))
        );
        assert_eq!(
            parsed("127.0.0.1:5000/team/app").ok(),
            Some(("127.0.0.1:5000/team/app".into(), "latest".into()))
        );
        assert_eq!(
            parsed("reg.example/app@sha256:abc").ok(),
            Some(("reg.example/app".into(), "sha256:abc".into()))
        );
        assert!(parsed("").is_err());
        assert!(parsed("reg.example/app:").is_err());
        assert!(parsed("reg.example/app@md5:x").is_err());
        assert!(parsed("reg.example/a b").is_err());
    }

    #[test]
    fn repositories_match_across_docker_hub_prefixes() {
        assert!(same_repository("busybox", "docker.io/library/busybox"));
        assert!(same_repository("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b"));
        assert!(!same_repository("127.0.0.1:5001/a/b", "127.0.0.1:5000/a/b"));
    }

    #[test]
    fn socket_path_is_hex_encoded_like_hyperlocal_expects() {
        assert_eq!(hex_encode(b"/a.sock"), "2f612e736f636b");
    }
}
