//! Tests of `DockerRuntime` against the real Docker Engine and a real registry (from
//! `wharf-testkit`). Every test here is named `docker_*`; run only these with
//! `cargo test -p wharf-agent --test docker`, or skip them with `--test process --lib`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::StreamExt as _;
use wharf_agent::{ContainerRuntime, DockerError, DockerRuntime, OutputSink, RegistryCredentials};
use wharf_testkit::bollard;
use wharf_testkit::docker::{unique_name, ImageGuard};
use wharf_testkit::registry::RegistryHarness;
use wharf_testkit::sample_image::{self, PushedImage};

/// A password whose credentials JSON, in standard base64, contains `+` or `/`: stock
/// bollard sends it in a form the engine cannot decode.
const NASTY_PASSWORD: &str = r#"p?a>s/s+w=o"r' d"#;
const USER: &str = "deployer";
const PULL_TIMEOUT: Duration = Duration::from_secs(120);

/// Serializes the tests that build, pull and remove images. Identical sample builds share
/// cached image layers (and a pulled image has the same id as the build it came from), so
/// one test's cleanup (`docker rmi`) could delete the image another test's build is just
/// tagging. Each test takes this lock first, so it is released after its `ImageGuard` has
/// run. A unique sample version per test also keeps these images apart from other test
/// binaries' builds.
static IMAGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn runtime() -> DockerRuntime {
    DockerRuntime::new(wharf_testkit::docker::socket_path()).expect("runtime")
}

fn credentials(registry: &RegistryHarness, password: &str) -> RegistryCredentials {
    RegistryCredentials {
        server_address: registry.addr(),
        username: USER.to_owned(),
        password: password.to_owned(),
    }
}

/// A registry with the nasty password and the sample image pushed to it as `demo/NAME:v1`,
/// absent from the local engine. `images` removes what the test pulls.
async fn registry_with_sample(images: &mut ImageGuard) -> (RegistryHarness, PushedImage) {
    let registry = RegistryHarness::start(&[(USER, NASTY_PASSWORD)])
        .await
        .expect("start the registry");
    let version = unique_name("agent-test");
    let local = images.add(format!("{}:v1", unique_name("wharf-agent-sample")));
    sample_image::build(&version, &local)
        .await
        .unwrap_or_else(|error| panic!("build: {error:#}"));
    let repository = unique_name("app");
    let pushed = sample_image::push(
        &local,
        &registry,
        "demo",
        &repository,
        "v1",
        (USER, NASTY_PASSWORD),
    )
    .await
    .unwrap_or_else(|error| panic!("push: {error:#}"));
    sample_image::remove_local(&pushed.reference)
        .await
        .unwrap_or_else(|error| panic!("remove local: {error:#}"));
    images.add(pushed.reference.clone());
    images.add(pushed.pinned());
    (registry, pushed)
}

#[tokio::test]
async fn docker_ping_reports_the_engine_version() {
    let version = runtime().ping().await.expect("engine answers");
    assert!(!version.version.is_empty(), "{version:?}");
    assert!(version.api_version.starts_with("1."), "{version:?}");
}

#[tokio::test]
async fn docker_pull_with_a_nasty_password_returns_the_digest() {
    let header = STANDARD.encode(
        serde_json::to_string(&bollard::auth::DockerCredentials {
            username: Some(USER.into()),
            password: Some(NASTY_PASSWORD.into()),
            serveraddress: Some("127.0.0.1:5000".into()),
            ..Default::default()
        })
        .expect("JSON"),
    );
    assert!(
        header.contains(['+', '/']),
        "precondition: the password must hit the base64 difference: {header}"
    );

    let _serial = IMAGES.lock().await;
    let mut images = ImageGuard::new();
    let (registry, pushed) = registry_with_sample(&mut images).await;
    let runtime = runtime();
    assert_eq!(
        runtime
            .image_digest(&pushed.reference)
            .await
            .expect("inspect"),
        None
    );

    let output = OutputSink::default();
    let digest = runtime
        .pull(
            &pushed.reference,
            Some(&credentials(&registry, NASTY_PASSWORD)),
            PULL_TIMEOUT,
            &output,
        )
        .await
        .unwrap_or_else(|error| panic!("pull: {error}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(digest, pushed.digest, "the digest the registry stored");
    assert_eq!(
        runtime
            .image_digest(&pushed.reference)
            .await
            .expect("inspect"),
        Some(digest.clone())
    );
    let tail = output.summary().tail;
    assert!(tail.contains(&format!("Digest: {digest}")), "{tail}");

    // Pulling by digest works too and names the same digest.
    let pinned = runtime
        .pull(
            &pushed.pinned(),
            Some(&credentials(&registry, NASTY_PASSWORD)),
            PULL_TIMEOUT,
            &OutputSink::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("pull by digest: {error}"));
    assert_eq!(pinned, digest);
}

/// The control for the test above: stock bollard, same password, same registry, fails.
#[tokio::test]
async fn docker_stock_bollard_loses_the_nasty_password() {
    let _serial = IMAGES.lock().await;
    let mut images = ImageGuard::new();
    let (registry, pushed) = registry_with_sample(&mut images).await;
    let socket = wharf_testkit::docker::socket_path();
    let stock = bollard::Docker::connect_with_unix(
        &socket.to_string_lossy(),
        120,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        },
    )
    .expect("stock bollard");
    let (repository, tag) = pushed.reference.rsplit_once(':').expect("tagged reference");
    let mut progress = stock.create_image(
        Some(bollard::image::CreateImageOptions {
            from_image: repository,
            tag,
            ..Default::default()
        }),
        None,
        Some(bollard::auth::DockerCredentials {
            username: Some(USER.into()),
            password: Some(NASTY_PASSWORD.into()),
            serveraddress: Some(registry.addr()),
            ..Default::default()
        }),
    );
    let mut failure = None;
    while let Some(item) = progress.next().await {
        if let Err(error) = item {
            failure = Some(format!("{error:?}"));
            break;
        }
    }
    let failure = failure.expect("stock bollard pull must fail with this password");
    assert!(failure.contains("no basic auth credentials"), "{failure}");
}

#[tokio::test]
async fn docker_pull_with_a_wrong_password_is_an_authentication_error() {
    let _serial = IMAGES.lock().await;
    let mut images = ImageGuard::new();
    let (registry, pushed) = registry_with_sample(&mut images).await;
    let err = runtime()
        .pull(
            &pushed.reference,
            Some(&credentials(&registry, "not the password")),
            PULL_TIMEOUT,
            &OutputSink::default(),
        )
        .await
        .expect_err("wrong password");
    assert!(
        matches!(err, DockerError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "registry authentication failed for {}",
            pushed.reference
        )),
        "{err}"
    );
    assert!(!err.to_string().contains("not the password"), "{err}");
}

#[tokio::test]
async fn docker_pull_without_credentials_is_an_authentication_error() {
    let _serial = IMAGES.lock().await;
    let mut images = ImageGuard::new();
    let (_registry, pushed) = registry_with_sample(&mut images).await;
    let err = runtime()
        .pull(
            &pushed.reference,
            None,
            PULL_TIMEOUT,
            &OutputSink::default(),
        )
        .await
        .expect_err("no credentials");
    assert!(
        matches!(err, DockerError::AuthenticationFailed { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn docker_pull_of_a_missing_tag_is_not_found() {
    let _serial = IMAGES.lock().await;
    let mut images = ImageGuard::new();
    let (registry, pushed) = registry_with_sample(&mut images).await;
    let missing = pushed.reference.replace(":v1", ":no-such-tag");
    let err = runtime()
        .pull(
            &missing,
            Some(&credentials(&registry, NASTY_PASSWORD)),
            PULL_TIMEOUT,
            &OutputSink::default(),
        )
        .await
        .expect_err("missing tag");
    assert!(matches!(err, DockerError::ImageNotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("image {missing} not found")),
        "{err}"
    );
}

#[tokio::test]
async fn docker_pull_that_outlasts_its_timeout_is_a_timeout_error() {
    let _serial = IMAGES.lock().await;
    let mut images = ImageGuard::new();
    let (registry, pushed) = registry_with_sample(&mut images).await;
    let err = runtime()
        .pull(
            &pushed.reference,
            Some(&credentials(&registry, NASTY_PASSWORD)),
            Duration::from_millis(1),
            &OutputSink::default(),
        )
        .await
        .expect_err("no pull finishes in 1 ms");
    assert!(matches!(err, DockerError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn docker_missing_socket_fails_fast_with_a_clear_message() {
    let runtime = DockerRuntime::new("/nonexistent/wharf/docker.sock").expect("runtime");
    let started = Instant::now();
    let err = runtime.ping().await.expect_err("no engine there");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, DockerError::EngineUnreachable { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("Docker Engine not reachable at /nonexistent/wharf/docker.sock: ")
            && text.ends_with(" — is docker running? Install and start Docker Engine on this host"),
        "{text}"
    );

    let err = runtime
        .pull(
            "127.0.0.1:1/a/b:c",
            None,
            PULL_TIMEOUT,
            &OutputSink::default(),
        )
        .await
        .expect_err("no engine there");
    assert!(
        matches!(err, DockerError::EngineUnreachable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn docker_dead_socket_fails_fast_with_a_clear_message() {
    // A socket file nobody listens on, as a stopped engine leaves behind.
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    let started = Instant::now();
    let err = DockerRuntime::new(&socket)
        .expect("runtime")
        .ping()
        .await
        .expect_err("nobody listens");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, DockerError::EngineUnreachable { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "Docker Engine not reachable at {}: ",
            socket.display()
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}
