//! The two-version sample application: build it, push it to a test registry, run it.
//!
//! The image is `sample-app/` at the repository root: busybox's `httpd` in a `FROM scratch`
//! image whose `GET /hello` answers `hello from VERSION\n`. [`build`] lays out the same
//! temporary build context as `sample-app/build.sh` (Dockerfile, a copy of `/bin/busybox`,
//! `hello.in` with its `@VERSION@` placeholder filled in) and runs `docker build`.
//!
//! [`push`] goes through the Docker Engine API with the credentials in the request only:
//! nothing is written to `~/.docker/config.json` and no password is on a command line.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bollard::auth::DockerCredentials;
use bollard::image::{PushImageOptions, RemoveImageOptions, TagImageOptions};
use futures::StreamExt as _;
use tokio::process::Command;

use crate::docker::{self, ContainerGuard};
use crate::registry::RegistryHarness;

/// The sample app's Dockerfile, from `sample-app/` at the repository root.
pub const DOCKERFILE: &str = include_str!("../../../sample-app/Dockerfile");

/// The sample app's page, with the `@VERSION@` placeholder.
pub const HELLO_TEMPLATE: &str = include_str!("../../../sample-app/hello.in");

/// The placeholder in [`HELLO_TEMPLATE`] that [`build`] replaces with the version.
pub const VERSION_PLACEHOLDER: &str = "@VERSION@";

/// The static busybox copied into the image (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// The port the sample app listens on inside its container.
pub const CONTAINER_PORT: u16 = 8080;

/// How long [`SampleContainer::wait_for_hello`] callers usually wait for the app.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// The exact body `GET /hello` answers for `version`: `hello from VERSION\n`.
pub fn hello_text(version: &str) -> String {
    HELLO_TEMPLATE.replace(VERSION_PLACEHOLDER, version)
}

/// Checks that `version` is plain tag-like text (`[A-Za-z0-9._-]+`), as `build.sh` does.
pub fn validate_version(version: &str) -> anyhow::Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    anyhow::ensure!(
        !version.is_empty() && version.chars().all(plain),
        "invalid sample app version {version:?}: use A-Z a-z 0-9 . _ -"
    );
    Ok(())
}

/// Builds the sample app for `version` and tags it `local_tag` in the local engine.
///
/// Uses the docker CLI's `docker build`; the image is `FROM scratch`, so nothing is pulled.
/// `--no-cache` gives every build layers of its own: with the cache, two tests that
/// build the same version share one image id, and one test's clean-up (`docker rmi`)
/// could delete the image the other is about to tag.
pub async fn build(version: &str, local_tag: &str) -> anyhow::Result<()> {
    validate_version(version)?;
    let context = tempfile::Builder::new()
        .prefix("wharf-sample-build-")
        .tempdir()
        .context("creating the build context directory")?;
    write_build_context(context.path(), version)?;

    let output = Command::new("docker")
        .arg("build")
        .arg("--quiet")
        .arg("--no-cache")
        .arg("--build-arg")
        .arg(format!("VERSION={version}"))
        .arg("--tag")
        .arg(local_tag)
        .arg(context.path())
        .stdin(Stdio::null())
        .output()
        .await
        .context("running docker build (is the docker CLI installed?)")?;
    if !output.status.success() {
        bail!(
            "docker build of sample app {version} as {local_tag} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Writes the Dockerfile, the busybox copy and the filled-in page into `dir`.
fn write_build_context(dir: &Path, version: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).context("writing the Dockerfile")?;
    std::fs::copy(BUSYBOX, dir.join("busybox")).with_context(|| {
        format!("copying {BUSYBOX} into the build context (install busybox-static)")
    })?;
    std::fs::write(dir.join("hello"), hello_text(version)).context("writing the hello page")?;
    Ok(())
}

/// An image pushed to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// `ENDPOINT/NAMESPACE/REPOSITORY:TAG`, e.g. `127.0.0.1:41234/demo/hello:v1`.
    pub reference: String,
    /// The manifest digest the registry stored, e.g. `sha256:…`.
    pub digest: String,
}

impl PushedImage {
    /// The reference pinned to the digest: `ENDPOINT/NAMESPACE/REPOSITORY@sha256:…`.
    pub fn pinned(&self) -> String {
        let repository = self
            .reference
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(self.reference.as_str(), |(repository, _)| repository);
        format!("{repository}@{}", self.digest)
    }
}

/// Pushes the local image `local_tag` to `registry` as `NAMESPACE/REPOSITORY:TAG`, logging
/// in with `credentials` = `(user, password)`.
///
/// The image is tagged with the registry's name for the push and that tag is removed
/// again afterwards (whether the push worked or not), so a later pull of the reference
/// really goes to the registry. The credentials travel only in the `X-Registry-Auth`
/// header of the push request, re-encoded by [`docker::connect`] so any password works.
pub async fn push(
    local_tag: &str,
    registry: &RegistryHarness,
    namespace: &str,
    repository: &str,
    tag: &str,
    credentials: (&str, &str),
) -> anyhow::Result<PushedImage> {
    let engine = docker::connect().await?;
    let remote_repository = format!("{}/{namespace}/{repository}", registry.addr());
    let reference = format!("{remote_repository}:{tag}");
    engine
        .tag_image(
            local_tag,
            Some(TagImageOptions {
                repo: remote_repository.as_str(),
                tag,
            }),
        )
        .await
        .with_context(|| format!("tagging {local_tag} as {reference}"))?;

    let (user, password) = credentials;
    let auth = DockerCredentials {
        username: Some(user.to_owned()),
        password: Some(password.to_owned()),
        serveraddress: Some(registry.addr()),
        ..Default::default()
    };
    let result = push_tagged(&engine, &remote_repository, tag, auth).await;
    let untagged = remove_with(&engine, &reference).await;
    let digest = result.with_context(|| format!("pushing {reference} as user {user:?}"))?;
    untagged.with_context(|| format!("removing the push tag {reference}"))?;
    Ok(PushedImage { reference, digest })
}

/// Runs the push and returns the digest from the engine's final status line.
async fn push_tagged(
    engine: &bollard::Docker,
    remote_repository: &str,
    tag: &str,
    auth: DockerCredentials,
) -> anyhow::Result<String> {
    let mut progress = engine.push_image(
        remote_repository,
        Some(PushImageOptions { tag }),
        Some(auth),
    );
    let mut digest = None;
    while let Some(message) = progress.next().await {
        let message = message.map_err(docker::describe_engine_error)?;
        if let Some(found) = message.status.as_deref().and_then(digest_from_status) {
            digest = Some(found);
        }
    }
    digest.context("the push finished without reporting a digest")
}

/// Picks the digest out of a status line like `v1: digest: sha256:… size: 528`.
fn digest_from_status(status: &str) -> Option<String> {
    let rest = &status[status.find("digest: ")? + "digest: ".len()..];
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then(|| digest.to_owned())
}

/// Removes `image_ref` from the local engine so a later pull must go to the registry.
///
/// Only that reference goes (like `docker rmi` without `--force`); an image it names that
/// has other tags stays. A reference that does not exist counts as removed.
pub async fn remove_local(image_ref: &str) -> anyhow::Result<()> {
    let engine = docker::connect().await?;
    remove_with(&engine, image_ref).await
}

async fn remove_with(engine: &bollard::Docker, image_ref: &str) -> anyhow::Result<()> {
    let options = RemoveImageOptions {
        force: false,
        noprune: false,
    };
    match engine.remove_image(image_ref, Some(options), None).await {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("removing local image {image_ref}")))
        }
    }
}

/// A sample app container published on an ephemeral loopback port, removed on drop.
#[derive(Debug)]
pub struct SampleContainer {
    guard: ContainerGuard,
    host_port: u16,
}

impl SampleContainer {
    /// The container's name.
    pub fn name(&self) -> &str {
        self.guard.name()
    }

    /// The loopback port the container's 8080 is published on.
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    /// `http://127.0.0.1:PORT/hello`.
    pub fn hello_url(&self) -> String {
        format!("http://127.0.0.1:{}/hello", self.host_port)
    }

    /// Polls `GET /hello` until it answers 200 and returns the body; fails after `timeout`.
    pub async fn wait_for_hello(&self, timeout: Duration) -> anyhow::Result<String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        let url = self.hello_url();
        let deadline = Instant::now() + timeout;
        loop {
            let last = match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => {
                    return response
                        .text()
                        .await
                        .with_context(|| format!("reading the body of GET {url}"));
                }
                Ok(response) => format!("status {}", response.status()),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                bail!("GET {url} did not answer 200 within {timeout:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `image_ref` detached as a uniquely named container, with its port 8080 published on
/// an ephemeral port of 127.0.0.1 (read back from the engine, so parallel runs never
/// collide). Does not wait for the app; see [`SampleContainer::wait_for_hello`].
pub async fn run(image_ref: &str) -> anyhow::Result<SampleContainer> {
    let name = docker::unique_name("wharf-sample");
    // The guard exists before the container does, so a half-started one is removed too.
    let guard = ContainerGuard::new(&name);
    let publish = format!("127.0.0.1::{CONTAINER_PORT}");
    docker_cli(&["run", "-d", "--name", &name, "-p", &publish, image_ref])
        .await
        .with_context(|| format!("starting a container of {image_ref}"))?;
    let port_line = docker_cli(&["port", &name, &format!("{CONTAINER_PORT}/tcp")])
        .await
        .with_context(|| format!("reading the published port of {name}"))?;
    // `docker port` prints one `IP:PORT` line per binding; ours is the loopback one.
    let host_port = port_line
        .lines()
        .find_map(|line| line.trim().strip_prefix("127.0.0.1:"))
        .and_then(|port| port.parse().ok())
        .with_context(|| format!("no 127.0.0.1 binding in `docker port` output {port_line:?}"))?;
    Ok(SampleContainer { guard, host_port })
}

/// Runs the docker CLI and returns its stdout; fails with its stderr.
async fn docker_cli(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running the docker CLI")?;
    if !output.status.success() {
        bail!(
            "docker {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_text_fills_the_placeholder() {
        assert_eq!(hello_text("v1"), "hello from v1\n");
        assert_eq!(hello_text("v2"), "hello from v2\n");
    }

    #[test]
    fn versions_are_checked() {
        assert!(validate_version("v1").is_ok());
        assert!(validate_version("1.2.3-rc_1").is_ok());
        assert!(validate_version("").is_err());
        assert!(validate_version("v1/evil").is_err());
        assert!(validate_version("v 1").is_err());
    }

    #[test]
    fn digest_is_parsed_from_the_final_status() {
        let status = "v1: digest: sha256:0123abcd size: 528";
        assert_eq!(
            digest_from_status(status).as_deref(),
            Some("sha256:0123abcd")
        );
        assert_eq!(digest_from_status("Pushed"), None);
    }

    #[test]
    fn pinned_reference_drops_the_tag() {
        let pushed = PushedImage {
            reference: "127.0.0.1:5000/demo/hello:v1".into(),
            digest: "sha256:abc".into(),
        };
        assert_eq!(pushed.pinned(), "127.0.0.1:5000/demo/hello@sha256:abc");
    }
}
