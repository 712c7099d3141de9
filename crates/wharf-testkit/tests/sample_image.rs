//! Tests of the sample image: build, push to a real registry with a nasty password, run.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::StreamExt as _;
use wharf_testkit::bollard::auth::DockerCredentials;
use wharf_testkit::bollard::image::{CreateImageOptions, PushImageOptions, TagImageOptions};
use wharf_testkit::docker::{self, ImageGuard};
use wharf_testkit::registry::RegistryHarness;
use wharf_testkit::sample_image::{self, DEFAULT_HELLO_TIMEOUT};

/// bollard's standard-base64 header carries `+` or `/` for this password, which the engine
/// cannot decode; see `stock_bollard_loses_the_nasty_password`.
const NASTY_PASSWORD: &str = r#"p?a>s/s+w=o"r' d"#;
const USER: &str = "wharf";

/// Builds the sample app for `version` under a unique local tag removed by `images`.
async fn build_sample(images: &mut ImageGuard, version: &str) -> String {
    let tag = images.add(format!(
        "{}:{version}",
        docker::unique_name("wharf-testkit-sample")
    ));
    sample_image::build(version, &tag)
        .await
        .unwrap_or_else(|error| panic!("build {version}: {error:#}"));
    tag
}

/// GETs `path` on the registry with the test user's credentials and returns the JSON.
async fn registry_json(registry: &RegistryHarness, path: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", registry.url()))
        .basic_auth(USER, Some(NASTY_PASSWORD))
        .send()
        .await
        .expect("registry request");
    assert!(
        response.status().is_success(),
        "GET {path}: {}",
        response.status()
    );
    response.json().await.expect("registry JSON")
}

async fn local_image_exists(reference: &str) -> bool {
    let engine = docker::connect().await.expect("connect to the engine");
    engine.inspect_image(reference).await.is_ok()
}

#[tokio::test]
async fn push_v1_and_v2_with_a_nasty_password() {
    let registry = RegistryHarness::start(&[(USER, NASTY_PASSWORD)])
        .await
        .expect("start the registry");
    let mut images = ImageGuard::new();
    let v1 = build_sample(&mut images, "v1").await;
    let v2 = build_sample(&mut images, "v2").await;

    let credentials = (USER, NASTY_PASSWORD);
    let pushed_v1 = sample_image::push(&v1, &registry, "demo", "hello", "v1", credentials)
        .await
        .unwrap_or_else(|error| panic!("push v1: {error:#}"));
    let pushed_v2 = sample_image::push(&v2, &registry, "demo", "hello", "v2", credentials)
        .await
        .unwrap_or_else(|error| panic!("push v2: {error:#}"));

    assert_eq!(
        pushed_v1.reference,
        format!("{}/demo/hello:v1", registry.addr())
    );
    assert_eq!(
        pushed_v2.reference,
        format!("{}/demo/hello:v2", registry.addr())
    );
    assert!(pushed_v1.digest.starts_with("sha256:"), "{pushed_v1:?}");
    assert_ne!(pushed_v1.digest, pushed_v2.digest);

    let catalog = registry_json(&registry, "/v2/_catalog").await;
    assert_eq!(catalog["repositories"], serde_json::json!(["demo/hello"]));
    let tags = registry_json(&registry, "/v2/demo/hello/tags/list").await;
    let mut tags: Vec<&str> = tags["tags"]
        .as_array()
        .expect("tags array")
        .iter()
        .filter_map(|tag| tag.as_str())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["v1", "v2"]);

    // The push tag is gone locally, so a later pull must really go to the registry.
    assert!(!local_image_exists(&pushed_v1.reference).await);
    assert!(local_image_exists(&v1).await);

    let log = registry.log_contents().expect("registry log");
    assert!(log.contains("PUT /v2/demo/hello/manifests/v1"), "{log}");
    assert!(
        !log.contains(NASTY_PASSWORD),
        "the password reached the registry log"
    );
}

#[tokio::test]
async fn push_with_a_wrong_password_fails() {
    let registry = RegistryHarness::start(&[(USER, NASTY_PASSWORD)])
        .await
        .expect("start the registry");
    let mut images = ImageGuard::new();
    let v1 = build_sample(&mut images, "v1").await;

    let error = sample_image::push(&v1, &registry, "demo", "hello", "v1", (USER, "wrong"))
        .await
        .expect_err("a push with a wrong password must fail");
    let message = format!("{error:#}");
    eprintln!("push with a wrong password failed as expected: {message}");
    assert!(message.contains("pushing"), "{message}");
    assert!(
        message.contains("unauthorized") || message.contains("authentication required"),
        "{message}"
    );

    let catalog = registry_json(&registry, "/v2/_catalog").await;
    assert_eq!(catalog["repositories"], serde_json::json!([]));
    assert!(!local_image_exists(&format!("{}/demo/hello:v1", registry.addr())).await);
}

/// Shows that the header fix matters: stock bollard sends this password in a header the
/// engine cannot decode, so the push goes out without credentials and fails.
#[tokio::test]
async fn stock_bollard_loses_the_nasty_password() {
    let registry = RegistryHarness::start(&[(USER, NASTY_PASSWORD)])
        .await
        .expect("start the registry");
    let credentials = DockerCredentials {
        username: Some(USER.into()),
        password: Some(NASTY_PASSWORD.into()),
        serveraddress: Some(registry.addr()),
        ..Default::default()
    };
    // bollard 0.18 serializes the credentials to JSON and encodes them with STANDARD.
    let header = STANDARD.encode(serde_json::to_string(&credentials).expect("JSON"));
    assert!(
        header.contains(['+', '/']),
        "precondition: the standard-base64 header {header} has no URL-unsafe character"
    );

    let mut images = ImageGuard::new();
    let v1 = build_sample(&mut images, "v1").await;
    let repository = format!("{}/demo/hello", registry.addr());
    let remote = images.add(format!("{repository}:v1"));
    let stock = wharf_testkit::bollard::Docker::connect_with_socket_defaults()
        .expect("stock bollard client")
        .negotiate_version()
        .await
        .expect("negotiate");
    stock
        .tag_image(
            &v1,
            Some(TagImageOptions {
                repo: repository.as_str(),
                tag: "v1",
            }),
        )
        .await
        .expect("tag for the push");
    let results: Vec<_> = stock
        .push_image(
            &repository,
            Some(PushImageOptions { tag: "v1" }),
            Some(credentials),
        )
        .collect()
        .await;
    let error = results
        .into_iter()
        .find_map(Result::err)
        .map(docker::describe_engine_error)
        .expect("stock bollard's push must fail with this password");
    assert!(
        format!("{error:#}").contains("no basic auth credentials"),
        "expected the engine to have sent no credentials, got: {error}"
    );
    drop(remote);
}

#[tokio::test]
async fn v1_container_answers_hello_from_v1() {
    let mut images = ImageGuard::new();
    let v1 = build_sample(&mut images, "v1").await;

    let container = sample_image::run(&v1).await.expect("run v1");
    let name = container.name().to_owned();
    let body = container
        .wait_for_hello(DEFAULT_HELLO_TIMEOUT)
        .await
        .expect("GET /hello");
    assert_eq!(body, "hello from v1\n");

    drop(container);
    let engine = docker::connect().await.expect("connect to the engine");
    assert!(
        engine.inspect_container(&name, None).await.is_err(),
        "container {name} is still there after drop"
    );
}

#[tokio::test]
async fn v2_pulled_from_the_registry_answers_hello_from_v2() {
    let registry = RegistryHarness::start(&[(USER, NASTY_PASSWORD)])
        .await
        .expect("start the registry");
    let mut images = ImageGuard::new();
    let v2 = build_sample(&mut images, "v2").await;
    let pushed = sample_image::push(
        &v2,
        &registry,
        "demo",
        "hello",
        "v2",
        (USER, NASTY_PASSWORD),
    )
    .await
    .unwrap_or_else(|error| panic!("push v2: {error:#}"));
    sample_image::remove_local(&pushed.reference)
        .await
        .expect("remove_local of an absent reference is fine");

    // Pull through the fixed client with the nasty password: the engine must log in.
    let engine = docker::connect().await.expect("connect to the engine");
    let pulled = images.add(pushed.reference.clone());
    let credentials = DockerCredentials {
        username: Some(USER.into()),
        password: Some(NASTY_PASSWORD.into()),
        serveraddress: Some(registry.addr()),
        ..Default::default()
    };
    let options = CreateImageOptions {
        from_image: pulled.as_str(),
        ..Default::default()
    };
    let mut progress = engine.create_image(Some(options), None, Some(credentials));
    while let Some(message) = progress.next().await {
        message.unwrap_or_else(|error| panic!("pull {pulled}: {error}"));
    }
    assert!(local_image_exists(&pulled).await);

    let container = sample_image::run(&pulled).await.expect("run v2");
    let body = container
        .wait_for_hello(Duration::from_secs(30))
        .await
        .expect("GET /hello");
    assert_eq!(body, "hello from v2\n");

    sample_image::remove_local(&v2)
        .await
        .expect("remove the local build");
    assert!(!local_image_exists(&v2).await);
}

/// `sample-app/build.sh`, used in the README's demo, builds the same app as `build`.
#[tokio::test]
async fn build_script_builds_the_same_app() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sample-app/build.sh");
    let mut images = ImageGuard::new();
    let tag = images.add(format!(
        "{}:v3",
        docker::unique_name("wharf-testkit-script")
    ));
    let output = tokio::process::Command::new("sh")
        .args([script, "v3", &tag])
        .output()
        .await
        .expect("run build.sh");
    assert!(
        output.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let container = sample_image::run(&tag).await.expect("run v3");
    let body = container
        .wait_for_hello(DEFAULT_HELLO_TIMEOUT)
        .await
        .expect("GET /hello");
    assert_eq!(body, "hello from v3\n");

    let refused = tokio::process::Command::new("sh")
        .args([script, "v3/../evil", &tag])
        .output()
        .await
        .expect("run build.sh");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "build.sh must refuse the version"
    );
}
