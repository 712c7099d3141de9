//! Tests of `RegistryHarness` against the real `docker-registry` binary.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;

use reqwest::StatusCode;
use wharf_testkit::registry::RegistryHarness;

/// A password with characters that break naive quoting and encoding.
const NASTY_PASSWORD: &str = r#"p?a>s/s+w=o"r' d"#;

async fn get_v2(registry: &RegistryHarness, auth: Option<(&str, &str)>) -> StatusCode {
    let mut request = reqwest::Client::new().get(format!("{}/v2/", registry.url()));
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await.expect("GET /v2/").status()
}

#[tokio::test]
async fn v2_needs_credentials() {
    let registry = RegistryHarness::start(&[("alice", "s3cret"), ("wharf", NASTY_PASSWORD)])
        .await
        .expect("start the registry");
    assert_eq!(registry.addr(), format!("127.0.0.1:{}", registry.port()));

    assert_eq!(get_v2(&registry, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_v2(&registry, Some(("alice", "s3cret"))).await,
        StatusCode::OK
    );
    assert_eq!(
        get_v2(&registry, Some(("wharf", NASTY_PASSWORD))).await,
        StatusCode::OK
    );
    assert_eq!(
        get_v2(&registry, Some(("alice", "wrong"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_v2(&registry, Some(("mallory", "s3cret"))).await,
        StatusCode::UNAUTHORIZED
    );

    // The registry's access log lands in its log file, not in the test's output.
    let log = registry.log_contents().expect("read the registry log");
    assert!(log.contains("GET /v2/"), "no access log line in:\n{log}");
    assert!(
        !log.contains(NASTY_PASSWORD),
        "the password reached the log:\n{log}"
    );
}

#[tokio::test]
async fn drop_stops_the_registry_and_removes_its_directory() {
    let registry = RegistryHarness::start(&[("alice", "s3cret")])
        .await
        .expect("start the registry");
    let dir = registry.dir().to_path_buf();
    let pid = registry.pid();
    let port = registry.port();
    assert!(dir.join("config.yml").exists());
    assert!(dir.join("htpasswd").exists());
    assert!(registry.log_path().starts_with(&dir));

    drop(registry);

    assert!(!dir.exists(), "{} still exists", dir.display());
    // The process was reaped as well as killed, so not even a zombie is left.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "registry process {pid} is still there"
    );
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "port {port} still accepts connections"
    );
}

#[tokio::test]
async fn htpasswd_holds_bcrypt_entries_only() {
    let registry = RegistryHarness::start(&[("alice", "s3cret"), ("bob", NASTY_PASSWORD)])
        .await
        .expect("start the registry");
    let htpasswd = std::fs::read_to_string(registry.dir().join("htpasswd")).expect("htpasswd");
    let lines: Vec<&str> = htpasswd.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, user) in lines.iter().zip(["alice", "bob"]) {
        let hash = line.strip_prefix(&format!("{user}:")).expect("user prefix");
        assert!(hash.starts_with("$2"), "not a bcrypt entry: {line}");
    }
    assert!(!htpasswd.contains("s3cret") && !htpasswd.contains(NASTY_PASSWORD));
}

#[tokio::test]
async fn start_on_all_interfaces() {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let registry = RegistryHarness::start_on(any, &[("alice", "s3cret")])
        .await
        .expect("start the registry on 0.0.0.0");
    assert_eq!(registry.bind_ip(), any);
    assert_eq!(registry.addr(), format!("127.0.0.1:{}", registry.port()));
    let config = std::fs::read_to_string(registry.dir().join("config.yml")).expect("config");
    assert!(
        config.contains(&format!("addr: \"0.0.0.0:{}\"", registry.port())),
        "{config}"
    );
    assert_eq!(get_v2(&registry, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_v2(&registry, Some(("alice", "s3cret"))).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn registries_run_side_by_side() {
    let (first, second) = tokio::join!(
        RegistryHarness::start(&[("alice", "one")]),
        RegistryHarness::start(&[("alice", "two")]),
    );
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert_ne!(first.port(), second.port());
    assert_ne!(first.dir(), second.dir());
    assert_eq!(get_v2(&first, Some(("alice", "one"))).await, StatusCode::OK);
    assert_eq!(
        get_v2(&second, Some(("alice", "two"))).await,
        StatusCode::OK
    );
    assert_eq!(
        get_v2(&second, Some(("alice", "one"))).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn user_names_with_colons_are_refused() {
    let error = RegistryHarness::start(&[("a:b", "x")])
        .await
        .expect_err("a user name with ':' cannot be an htpasswd entry");
    assert!(
        error.to_string().contains("invalid registry user name"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_panicking_test_still_cleans_up() {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let registry = RegistryHarness::start(&[("alice", "s3cret")])
            .await
            .expect("start the registry");
        sender
            .send((registry.dir().to_path_buf(), registry.pid()))
            .expect("send");
        panic!("a test fails while the registry runs");
    });
    let (dir, pid) = receiver.await.expect("the task reports its registry");
    assert!(task.await.expect_err("the task panicked").is_panic());
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}
