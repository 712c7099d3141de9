//! TLS for the server's listener: reading a certificate chain and its private key
//! from PEM files, checking them (the key belongs to the certificate, the
//! certificate is valid now), and a certificate resolver that holds the current
//! pair behind a lock so that [`ServerTls::reload`] (what SIGHUP calls) switches
//! to renewed files without a restart and without dropping the listener.
//!
//! The handshake itself runs in each connection's task (`serve.rs`), bounded by
//! [`HANDSHAKE_TIMEOUT`], so a client that opens a connection and sends nothing
//! holds no accept.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a client may take to complete the TLS handshake after connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate that expires within this long is served with a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a certificate or key could not be used. Every message names the file; none
/// carries any of the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the certificate file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("the certificate file {path} is not valid PEM: {detail}")]
    BadCertificatePem { path: PathBuf, detail: String },
    #[error("the certificate in {path} cannot be parsed as X.509: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error(
        "the key file {path} holds no usable private key (PEM PKCS#8, SEC1 or RSA: \
         -----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY)"
    )]
    BadKey { path: PathBuf },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {path} expired on {not_after} (its notAfter)")]
    Expired { path: PathBuf, not_after: String },
    #[error("the certificate in {path} is not valid before {not_before} (its notBefore)")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(#[source] rustls::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make a certificate for --tls auto: {0}")]
    Generate(String),
}

/// Where the server's certificate chain and private key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's TLS setup: the rustls configuration and the resolver whose
/// certificate [`ServerTls::reload`] replaces. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    resolver: Arc<ReloadingResolver>,
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.resolver.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the files; the server answers with this pair until the
    /// next successful [`ServerTls::reload`].
    pub fn from_files(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_certified_key(&files, &provider)?;
        let resolver = Arc::new(ReloadingResolver {
            files,
            provider: provider.clone(),
            current: RwLock::new(key),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // HTTP/1.1 only, as the connection loop serves.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            resolver,
            config: Arc::new(config),
        })
    }

    /// Re-reads the files. On success new handshakes use the new pair (connections
    /// already open keep theirs); on failure the current pair stays and the error
    /// says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.resolver.files, &self.resolver.provider)?;
        let mut current = self
            .resolver
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = key;
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.resolver.files
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// Answers every handshake with the pair last read from the files.
struct ReloadingResolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingResolver")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(current.clone())
    }
}

/// Reads the chain and the key, and checks that they belong together and that the
/// leaf certificate is valid now.
fn load_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certificates(&files.cert)?;
    let now = SystemTime::now();
    check_validity(&files.cert, &chain[0], now)?;
    // Still valid, but not for long: say so while there is time to renew.
    if check_validity(&files.cert, &chain[0], now + EXPIRY_WARNING).is_err() {
        tracing::warn!(
            cert = %files.cert.display(),
            "the TLS certificate expires within 30 days; renew it and send SIGHUP"
        );
    }
    let key = read_private_key(&files.key)?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|err| match err {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        // rustls only says the key is of a kind it cannot sign with; its message
        // holds nothing of the key.
        _ => TlsError::BadKey {
            path: files.key.clone(),
        },
    })?;
    Ok(Arc::new(certified))
}

/// The certificates of a PEM file, leaf first; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "the certificate file",
        path: path.to_path_buf(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::BadCertificatePem {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    for cert in &chain {
        x509_parser::parse_x509_certificate(cert).map_err(|err| TlsError::BadCertificate {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    }
    Ok(chain)
}

/// The private key of a PEM file. The PEM parser's errors are not passed on: they
/// could quote a line of the key.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "the key file",
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::BadKey {
        path: path.to_path_buf(),
    })
}

/// Refuses a certificate outside its validity period at `now`.
pub fn check_validity(
    path: &Path,
    cert: &CertificateDer<'_>,
    now: SystemTime,
) -> Result<(), TlsError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|err| TlsError::BadCertificate {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    });
    let validity = parsed.validity();
    if validity.not_after.timestamp() < now {
        return Err(TlsError::Expired {
            path: path.to_path_buf(),
            not_after: validity.not_after.to_string(),
        });
    }
    if validity.not_before.timestamp() > now {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// The SHA-256 of a certificate's DER, as `sha256:` and lowercase hex: what
/// operators compare and what a future registration-token pin carries.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(cert.as_ref()))
    )
}
