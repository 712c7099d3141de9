//! `--tls auto`: a private CA and a server certificate signed by it, kept in
//! `DATA_DIR/tls/` (`ca.pem`, `ca.key`, `server.pem`, `server.key`, each 0600 in a
//! 0700 directory). The CA is made once and reused; the server certificate is
//! issued again when the names asked for changed or it expires within
//! [`RENEW_BEFORE`]. Keys are ECDSA P-256.

use crate::secrets::{create_private_dir, write_private_file};
use crate::tls::{fingerprint, read_certificates, TlsError, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// A server certificate this close to its notAfter is issued again at start.
pub const RENEW_BEFORE: Duration = Duration::days(30);
/// How long a server certificate is valid (the browsers' 397-day cap).
const SERVER_VALIDITY: Duration = Duration::days(397);
/// How long the private CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);

/// What [`ensure`] made or found.
#[derive(Debug, Clone)]
pub struct AutoTls {
    /// The server certificate and key to serve with.
    pub files: TlsFiles,
    /// The CA's certificate: the file clients are given (`--ca-cert`).
    pub ca_cert: PathBuf,
    /// The CA certificate's SHA-256, `sha256:` and hex.
    pub ca_fingerprint: String,
    pub ca_created: bool,
    pub server_issued: bool,
}

/// The names a `--tls auto` certificate carries: those asked for, the listen
/// address unless it is unspecified (0.0.0.0 or ::), `localhost`, 127.0.0.1 and
/// this host's name. Sorted, without duplicates.
pub fn default_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: BTreeSet<String> = extra
        .iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if !listen.ip().is_unspecified() {
        names.insert(listen.ip().to_string());
    }
    names.insert("localhost".to_owned());
    names.insert("127.0.0.1".to_owned());
    if let Some(host) = hostname() {
        names.insert(host);
    }
    names.into_iter().collect()
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_ascii_lowercase();
    (!name.is_empty() && name != "localhost").then_some(name)
}

/// Makes (or reuses) the CA and the server certificate for `names` in
/// `data_dir/tls`.
pub fn ensure(data_dir: &Path, names: &[String]) -> Result<AutoTls, TlsError> {
    let dir = data_dir.join("tls");
    create_private_dir(&dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let now = OffsetDateTime::now_utc();

    let ca_created = !ca_cert.exists();
    let (ca_pem, ca_key_pair) = if ca_created {
        let (pem, key) = make_ca(now)?;
        write(&ca_key, key.serialize_pem().as_bytes())?;
        write(&ca_cert, pem.as_bytes())?;
        (pem, key)
    } else {
        let pem = read_text(&ca_cert, "the CA certificate")?;
        let key_pem = read_text(&ca_key, "the CA key")?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| TlsError::BadKey {
            path: ca_key.clone(),
        })?;
        (pem, key)
    };
    let ca_der = read_certificates(&ca_cert)?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, ca_key_pair).map_err(|err| TlsError::BadCertificate {
            path: ca_cert.clone(),
            detail: err.to_string(),
        })?;

    let server_issued =
        ca_created || needs_issue(&files.cert, names, now) || !issued_by(&files.cert, &ca_der[0]);
    if server_issued {
        let key = KeyPair::generate().map_err(|err| TlsError::Generate(err.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|err| TlsError::Generate(err.to_string()))?;
        params.subject_alt_names = names
            .iter()
            .map(|name| san(name))
            .collect::<Result<_, _>>()?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.not_before = now - Duration::hours(1);
        params.not_after = now + SERVER_VALIDITY;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|err| TlsError::Generate(err.to_string()))?;
        write(&files.key, key.serialize_pem().as_bytes())?;
        // The chain: the server certificate, then the CA's.
        write(&files.cert, format!("{}{ca_pem}", cert.pem()).as_bytes())?;
    }
    Ok(AutoTls {
        files,
        ca_fingerprint: fingerprint(&ca_der[0]),
        ca_cert,
        ca_created,
        server_issued,
    })
}

fn make_ca(now: OffsetDateTime) -> Result<(String, KeyPair), TlsError> {
    let key = KeyPair::generate().map_err(|err| TlsError::Generate(err.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|err| TlsError::Generate(err.to_string()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // A name of its own, so that two servers' CAs are told apart by name too.
    let tag: [u8; 4] = rand::random();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Wharf private CA {}", hex::encode(tag)),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Wharf");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    let cert = params
        .self_signed(&key)
        .map_err(|err| TlsError::Generate(err.to_string()))?;
    Ok((cert.pem(), key))
}

/// A name as a subjectAltName: an IP address or a DNS name.
fn san(name: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    name.to_owned()
        .try_into()
        .map(SanType::DnsName)
        .map_err(|_| TlsError::Generate(format!("{name:?} is not a DNS name or an IP address")))
}

/// Whether the server certificate must be issued again: missing, unreadable, for
/// other names, or expiring within [`RENEW_BEFORE`].
fn needs_issue(path: &Path, names: &[String], now: OffsetDateTime) -> bool {
    let Ok(chain) = read_certificates(path) else {
        return true;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&chain[0]) else {
        return true;
    };
    if cert.validity().not_after.timestamp() < (now + RENEW_BEFORE).unix_timestamp() {
        return true;
    }
    let mut present = BTreeSet::new();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    present.insert((*dns).to_owned());
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        present.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let wanted: BTreeSet<String> = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => name.clone(),
        })
        .collect();
    present != wanted
}

/// Whether the chain in `path` carries `ca` after the leaf, as [`ensure`] writes it:
/// not so when the CA files were replaced since.
fn issued_by(path: &Path, ca: &rustls_pki_types::CertificateDer<'_>) -> bool {
    read_certificates(path).is_ok_and(|chain| chain.get(1) == Some(ca))
}

fn read_text(path: &Path, what: &'static str) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_private_file(path, contents).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_reused_and_the_server_certificate_follows_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "10.1.2.3".to_owned()];
        let first = ensure(dir.path(), &names).unwrap();
        assert!(first.ca_created && first.server_issued);
        let server_pem = std::fs::read(&first.files.cert).unwrap();

        let again = ensure(dir.path(), &names).unwrap();
        assert!(!again.ca_created && !again.server_issued);
        assert_eq!(again.ca_fingerprint, first.ca_fingerprint);
        assert_eq!(std::fs::read(&again.files.cert).unwrap(), server_pem);

        let more = vec!["localhost".to_owned(), "wharf.example".to_owned()];
        let renamed = ensure(dir.path(), &more).unwrap();
        assert!(!renamed.ca_created && renamed.server_issued);
        assert_eq!(renamed.ca_fingerprint, first.ca_fingerprint);
        assert!(!needs_issue(
            &renamed.files.cert,
            &more,
            OffsetDateTime::now_utc()
        ));
        // Within 30 days of its notAfter, it is issued again.
        assert!(needs_issue(
            &renamed.files.cert,
            &more,
            OffsetDateTime::now_utc() + SERVER_VALIDITY - Duration::days(10)
        ));
        // The files serve.
        crate::tls::ServerTls::from_files(renamed.files).unwrap();
    }
}
