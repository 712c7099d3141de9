//! A bollard client for the local Docker Engine whose registry credentials reach the engine intact.
//!
//! bollard 0.18 encodes the `X-Registry-Auth` (and `X-Registry-Config`) header with the
//! *standard* base64 alphabet, while the engine decodes it with the *URL-safe* alphabet.
//! Whenever the encoded JSON contains a `+` or `/` (passwords with `?` or `>` make that
//! likely), the engine fails to decode the header and silently goes on with empty
//! credentials, so the registry answers "no basic auth credentials". [`connect`] builds a
//! client whose transport re-encodes those headers to the URL-safe alphabet before they
//! leave the process; every other byte of every request is untouched.
//!
//! The module also holds small cleanup guards that remove containers and images when a test
//! ends, whether it passed or panicked.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use hyper::header::{HeaderMap, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng as _;

/// The socket used when `DOCKER_HOST` does not name a unix socket.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Seconds bollard waits for one request to the engine before giving up.
const REQUEST_TIMEOUT_SECS: u64 = 300;

/// The headers in which bollard sends base64-encoded registry credentials.
const REGISTRY_HEADERS: [&str; 2] = ["X-Registry-Auth", "X-Registry-Config"];

/// The path of the engine's unix socket: `DOCKER_HOST` if it is `unix://…`, else the default.
pub fn socket_path() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(&host["unix://".len()..]),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// Connects to the local engine over its unix socket, with the registry-header fix, and
/// negotiates the API version (the engine on this machine kind speaks 1.41).
pub async fn connect() -> anyhow::Result<Docker> {
    let socket = socket_path();
    anyhow::ensure!(
        socket.exists(),
        "the Docker Engine socket {} does not exist",
        socket.display()
    );

    // bollard's own unix transport disables connection pooling too: the engine hijacks
    // some connections (attach, exec), which must never be handed back to a pool.
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(0);
    let client = builder.build(hyperlocal::UnixConnector);

    let transport = move |mut request: BollardRequest| {
        let client = client.clone();
        async move {
            reencode_registry_headers(request.headers_mut());
            client
                .request(request)
                .await
                .map_err(bollard::errors::Error::from)
        }
    };

    // With a custom transport bollard builds URIs as `SCHEME://ADDR/v1.xx/…`; hyperlocal's
    // connector expects the socket path hex-encoded in the host part of a `unix://` URI.
    let address = format!(
        "unix://{}",
        hex::encode(socket.as_os_str().as_encoded_bytes())
    );
    let docker = Docker::connect_with_custom_transport(
        transport,
        Some(address),
        REQUEST_TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )
    .context("creating the bollard client")?;
    docker
        .negotiate_version()
        .await
        .with_context(|| format!("negotiating the API version with {}", socket.display()))
}

/// Rewrites bollard's standard-base64 registry headers in the URL-safe alphabet the engine
/// decodes. Headers that are not valid standard base64 are left as they are.
pub fn reencode_registry_headers(headers: &mut HeaderMap) {
    for name in REGISTRY_HEADERS {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let Some(fixed) = value.to_str().ok().and_then(url_safe_from_standard) else {
            continue;
        };
        if let Ok(fixed) = HeaderValue::from_str(&fixed) {
            headers.insert(name, fixed);
        }
    }
}

/// Re-encodes a standard-alphabet base64 string in the URL-safe alphabet (with padding, as
/// Go's `base64.URLEncoding` expects); `None` if the input is not standard base64.
pub fn url_safe_from_standard(encoded: &str) -> Option<String> {
    STANDARD
        .decode(encoded)
        .ok()
        .map(|raw| URL_SAFE.encode(raw))
}

/// Turns a bollard error into one whose text carries the engine's message: bollard turns
/// an `error` field in a progress stream into `DockerStreamError`, whose `Display` omits it.
pub fn describe_engine_error(error: bollard::errors::Error) -> anyhow::Error {
    match error {
        bollard::errors::Error::DockerStreamError { error } => {
            anyhow::anyhow!("the engine reported: {error}")
        }
        other => anyhow::Error::new(other).context("the engine request failed"),
    }
}

/// A name that no parallel test run will also pick: `PREFIX-` and 12 random hex digits.
pub fn unique_name(prefix: &str) -> String {
    let suffix: u64 = rand::thread_rng().gen();
    format!("{prefix}-{:012x}", suffix & 0xffff_ffff_ffff)
}

/// Runs the docker CLI synchronously with its output discarded; used only by the guards'
/// `Drop`, where no async runtime may be available and a failure cannot be reported.
fn docker_cli_quietly(args: &[&str]) {
    let _ = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes a container (running or not) when dropped.
#[derive(Debug)]
pub struct ContainerGuard {
    name: String,
}

impl ContainerGuard {
    /// Guards the container with this name or id.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The guarded container's name or id.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        docker_cli_quietly(&["rm", "-f", "-v", &self.name]);
    }
}

/// Removes image references from the local engine when dropped.
///
/// Only the references are removed: an image that still has another tag stays, as
/// `docker rmi` without `--force` does, so parallel tests sharing identical layers do not
/// pull images from under each other.
#[derive(Debug, Default)]
pub struct ImageGuard {
    references: Vec<String>,
}

impl ImageGuard {
    /// An empty guard; add references with [`ImageGuard::add`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reference to remove on drop and returns it, for chaining into a build call.
    pub fn add(&mut self, reference: impl Into<String>) -> String {
        let reference = reference.into();
        self.references.push(reference.clone());
        reference
    }

    /// The references this guard will remove.
    pub fn references(&self) -> &[String] {
        &self.references
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        for reference in &self.references {
            docker_cli_quietly(&["rmi", reference]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reencodes_standard_alphabet_to_url_safe() {
        // 0xfb 0xff encodes to "+/8=" in the standard alphabet and "-_8=" in the URL-safe one.
        let standard = STANDARD.encode([0xfb, 0xff]);
        assert_eq!(standard, "+/8=");
        assert_eq!(url_safe_from_standard(&standard).as_deref(), Some("-_8="));
    }

    #[test]
    fn leaves_non_base64_headers_alone() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Registry-Auth", HeaderValue::from_static("not base64!"));
        headers.insert("X-Other", HeaderValue::from_static("+/8="));
        reencode_registry_headers(&mut headers);
        assert_eq!(headers["X-Registry-Auth"], "not base64!");
        assert_eq!(headers["X-Other"], "+/8=");
    }

    #[test]
    fn rewrites_both_registry_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Registry-Auth", HeaderValue::from_static("+/8="));
        headers.insert("X-Registry-Config", HeaderValue::from_static("+/8="));
        reencode_registry_headers(&mut headers);
        assert_eq!(headers["X-Registry-Auth"], "-_8=");
        assert_eq!(headers["X-Registry-Config"], "-_8=");
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("wharf-test");
        let b = unique_name("wharf-test");
        assert!(a.starts_with("wharf-test-"));
        assert_eq!(a.len(), "wharf-test-".len() + 12);
        assert_ne!(a, b);
    }
}
