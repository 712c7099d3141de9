//! Which certificates a client trusts for the Wharf server: the web PKI (the
//! default), or a company or private CA given as a PEM file (`--ca-cert`), which
//! then is the only root. [`ServerTrust::apply`] is the one place an HTTP client's
//! roots are set, for the CLI and the agent alike: a registration token's CA pin
//! would be another variant here, verified by a custom rustls verifier.
//!
//! Also tells a handshake refused for an untrusted certificate apart from other
//! transport failures, so that the message says which CA the server is not
//! signed by.

use std::fmt;
use std::path::{Path, PathBuf};

/// The roots the server's certificate must chain to.
#[derive(Clone, Default)]
pub enum ServerTrust {
    /// The web PKI's roots (Mozilla's, compiled in).
    #[default]
    WebPki,
    /// Only this CA. `source` names where it came from (a file path) for messages.
    Ca { source: String, pem: Vec<u8> },
}

impl fmt::Debug for ServerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WebPki => f.write_str("WebPki"),
            Self::Ca { source, .. } => f.debug_struct("Ca").field("source", source).finish(),
        }
    }
}

/// Why a CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the CA certificate file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the CA certificate file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    )]
    NoCertificate { path: PathBuf },
    #[error("the CA certificate in {origin} cannot be used: {reason}")]
    Invalid { origin: String, reason: String },
}

impl ServerTrust {
    /// Reads a PEM file holding one or more CA certificates.
    pub fn ca_file(path: &Path) -> Result<Self, TrustError> {
        let pem = std::fs::read(path).map_err(|source| TrustError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::ca_pem(path.display().to_string(), pem).map_err(|err| match err {
            TrustError::NoCertificate { .. } => TrustError::NoCertificate {
                path: path.to_path_buf(),
            },
            other => other,
        })
    }

    /// A CA from PEM text already read (such as what `wharf login` saved).
    pub fn ca_pem(source: String, pem: Vec<u8>) -> Result<Self, TrustError> {
        let trust = Self::Ca { source, pem };
        let certificates = trust.certificates()?;
        if certificates.is_empty() {
            return Err(TrustError::NoCertificate {
                path: PathBuf::from(trust.source().unwrap_or_default()),
            });
        }
        Ok(trust)
    }

    /// Where the CA came from; `None` for the web PKI.
    pub fn source(&self) -> Option<&str> {
        match self {
            Self::WebPki => None,
            Self::Ca { source, .. } => Some(source),
        }
    }

    /// The CA's PEM text; `None` for the web PKI.
    pub fn pem(&self) -> Option<&[u8]> {
        match self {
            Self::WebPki => None,
            Self::Ca { pem, .. } => Some(pem),
        }
    }

    fn certificates(&self) -> Result<Vec<reqwest::Certificate>, TrustError> {
        match self {
            Self::WebPki => Ok(Vec::new()),
            Self::Ca { source, pem } => {
                // Only the PEM's certificate blocks: a bundle may carry comments.
                if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Ok(Vec::new());
                }
                reqwest::Certificate::from_pem_bundle(pem).map_err(|err| TrustError::Invalid {
                    origin: source.clone(),
                    reason: err.to_string(),
                })
            }
        }
    }

    /// The SHA-256 of the (first) CA certificate's DER, as `sha256:` and hex: what
    /// `wharf server --tls auto` prints at start, for comparing. `None` for the web
    /// PKI.
    pub fn fingerprint(&self) -> Option<String> {
        use rustls_pki_types::pem::PemObject as _;
        use sha2::Digest as _;
        let pem = self.pem()?;
        let first = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .next()?
            .ok()?;
        Some(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(first.as_ref()))
        ))
    }

    /// Sets `builder`'s roots: unchanged for the web PKI; only the CA otherwise.
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TrustError> {
        match self {
            Self::WebPki => Ok(builder),
            Self::Ca { .. } => Ok(self
                .certificates()?
                .into_iter()
                .fold(builder.tls_built_in_root_certs(false), |builder, cert| {
                    builder.add_root_certificate(cert)
                })),
        }
    }

    /// When `err` is a handshake refused because of the server's certificate, a
    /// sentence saying so (and, for a certificate not signed by the trusted CA,
    /// which CA that is); `None` for any other failure.
    pub fn explain(&self, err: &(dyn std::error::Error + 'static)) -> Option<String> {
        let chain = error_chain(err);
        // A CA of the same name but another key (such as another server's `--tls
        // auto` CA) fails on the signature rather than on the issuer.
        let other_ca = matches!(self, Self::Ca { .. }) && chain.contains("BadSignature");
        if other_ca || chain.contains("UnknownIssuer") || chain.contains("unknown issuer") {
            return Some(match self {
                Self::Ca { source, .. } => {
                    format!("the server's certificate is not signed by the CA in {source}")
                }
                Self::WebPki => "the server's certificate is not signed by a CA this machine \
                                 trusts; pass --ca-cert FILE (or set WHARF_CA_CERT) with the \
                                 server's CA (for `wharf server --tls auto`: DATA_DIR/tls/ca.pem)"
                    .to_owned(),
            });
        }
        if chain.contains("invalid peer certificate") {
            let cause = chain
                .split("invalid peer certificate")
                .nth(1)
                .unwrap_or_default()
                .trim_start_matches(':')
                .trim();
            return Some(format!("the server's certificate was refused: {cause}"));
        }
        None
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}
