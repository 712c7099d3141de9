//! The server over TLS: the API over https with a test CA made here, a client
//! without that CA refused, a certificate reload (what SIGHUP calls) switching to
//! a new certificate while the listener keeps serving, a failed reload keeping the
//! old one, and every bad certificate/key file refused with a message naming it.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use wharf_server::tls::{ServerTls, TlsError, TlsFiles};
use wharf_server::{bind, ServerConfig};

/// A CA: its PEM and what signs with it.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn make_ca(name: &str) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for localhost and 127.0.0.1 signed by `ca`, valid from
/// `not_before` to `not_after` (seconds from now): (chain PEM, key PEM).
fn make_leaf(ca: &TestCa, not_before: i64, not_after: i64) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(not_before);
    params.not_after = now + time::Duration::seconds(not_after);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (format!("{}{}", cert.pem(), ca.pem), key.serialize_pem())
}

fn write_pair(dir: &Path, chain: &str, key: &str) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, chain).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

/// A client that trusts only `ca_pem`.
fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Running {
    url: String,
    admin: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(data_dir: &Path, tls: ServerTls) -> Running {
    let bound = bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        database: None,
    })
    .await
    .unwrap()
    .with_tls(tls);
    let url = format!("https://localhost:{}", bound.local_addr().port());
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
    Running {
        url,
        admin,
        stop,
        task,
    }
}

async fn list_apps(client: &reqwest::Client, server: &Running) -> reqwest::Result<u16> {
    let response = client
        .get(format!("{}/api/v1/apps", server.url))
        .bearer_auth(&server.admin)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// The whole chain of an error, for asserting on a cause deep inside.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

#[tokio::test]
async fn api_over_https_and_reload_switches_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = make_ca("first CA");
    let (chain_pem, key_pem) = make_leaf(&first_ca, -3600, 86_400);
    let files = write_pair(dir.path(), &chain_pem, &key_pem);
    let tls = ServerTls::from_files(files.clone()).unwrap();
    let server = start(&dir.path().join("data"), tls.clone()).await;

    // Trusting the CA: the API answers over https.
    let first = client_trusting(&first_ca.pem);
    assert_eq!(list_apps(&first, &server).await.unwrap(), 200);

    // Without it (only the web PKI), the handshake is refused.
    let stranger = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = list_apps(&stranger, &server).await.unwrap_err();
    assert!(
        chain(&err).contains("UnknownIssuer") || chain(&err).contains("certificate"),
        "{}",
        chain(&err)
    );
    // Plain HTTP to the TLS port gets no answer either.
    let plain = format!("{}/healthz", server.url.replace("https://", "http://"));
    assert!(stranger
        .get(plain)
        .send()
        .await
        .map(|response| response.status().is_success())
        .map_or(true, |ok| !ok));

    // A client that connects and never starts the handshake holds no accept: others
    // are served meanwhile, and the server drops it after the handshake timeout.
    let addr = server.url.replace("https://localhost", "127.0.0.1");
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(
        list_apps(&client_trusting(&first_ca.pem), &server)
            .await
            .unwrap(),
        200
    );
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        wharf_server::tls::HANDSHAKE_TIMEOUT + Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("the server closes a connection that never shakes hands");
    assert_eq!(read.unwrap_or(0), 0);

    // A renewed certificate from another CA, then the reload SIGHUP calls.
    let second_ca = make_ca("second CA");
    let (chain_pem, key_pem) = make_leaf(&second_ca, -3600, 86_400);
    write_pair(dir.path(), &chain_pem, &key_pem);
    tls.reload().unwrap();

    let second = client_trusting(&second_ca.pem);
    assert_eq!(list_apps(&second, &server).await.unwrap(), 200);
    // A new connection that trusts only the first CA is refused now ...
    let err = list_apps(&client_trusting(&first_ca.pem), &server)
        .await
        .unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));
    // ... while the first client's kept-alive connection, made before, still works.
    assert_eq!(list_apps(&first, &server).await.unwrap(), 200);

    // A reload of broken files fails and keeps the current certificate.
    std::fs::write(&files.cert, "not a certificate\n").unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    let fresh = client_trusting(&second_ca.pem);
    assert_eq!(list_apps(&fresh, &server).await.unwrap(), 200);

    let _ = server.stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server.task)
        .await
        .unwrap()
        .unwrap();
}

/// `from_files` on a cert and key written to `dir`; the error's message.
fn refused(cert: &Path, key: &Path) -> (TlsError, String) {
    let err = ServerTls::from_files(TlsFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    })
    .unwrap_err();
    let message = err.to_string();
    (err, message)
}

#[test]
fn bad_certificates_and_keys_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("test CA");
    let (chain_pem, key_pem) = make_leaf(&ca, -3600, 86_400);
    let good = write_pair(dir.path(), &chain_pem, &key_pem);
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    // Missing files.
    let missing = dir.path().join("missing.pem");
    let (err, message) = refused(&missing, &good.key);
    assert!(matches!(err, TlsError::Read { .. }), "{message}");
    assert!(message.contains("missing.pem"), "{message}");
    let (_, message) = refused(&good.cert, &missing);
    assert!(
        message.contains("key file") && message.contains("missing.pem"),
        "{message}"
    );

    // A file with no certificate (a key where the certificate should be).
    let (err, message) = refused(&good.key, &good.key);
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{message}");
    assert!(message.contains("server.key"), "{message}");

    // A key file with no key, and with a certificate instead.
    let (err, message) = refused(&good.cert, &write("empty.key", "\n"));
    assert!(matches!(err, TlsError::BadKey { .. }), "{message}");
    assert!(message.contains("empty.key"), "{message}");
    let (err, _) = refused(&good.cert, &good.cert);
    assert!(matches!(err, TlsError::BadKey { .. }));

    // A key of another certificate: refused, and none of its bytes in the message.
    let (_, other_key) = make_leaf(&ca, -3600, 86_400);
    let other_key_path = write("other.key", &other_key);
    let (err, message) = refused(&good.cert, &other_key_path);
    assert!(matches!(err, TlsError::Mismatch { .. }), "{message}");
    assert!(
        message.contains("server.pem") && message.contains("other.key"),
        "{message}"
    );
    let body: String = other_key
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert!(!message.contains(&body[..20]), "{message}");

    // Expired, and not valid yet.
    let (chain_pem, key_pem) = make_leaf(&ca, -7200, -3600);
    let expired = write("expired.pem", &chain_pem);
    let expired_key = write("expired.key", &key_pem);
    let (err, message) = refused(&expired, &expired_key);
    assert!(matches!(err, TlsError::Expired { .. }), "{message}");
    assert!(
        message.contains("expired.pem") && message.contains("expired"),
        "{message}"
    );
    let (chain_pem, key_pem) = make_leaf(&ca, 3600, 7200);
    let (err, _) = refused(
        &write("future.pem", &chain_pem),
        &write("future.key", &key_pem),
    );
    assert!(matches!(err, TlsError::NotYetValid { .. }), "{err}");

    // The good pair is accepted.
    ServerTls::from_files(good).unwrap();
}
