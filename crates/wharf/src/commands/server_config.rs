//! The configuration of `wharf server`: the TOML file of `--config`, the layering
//! flag > `WHARF_*` environment > file > default, its validation, and the TOML that
//! `--print-config` shows (secrets redacted).
//!
//! Clap already merges the first two layers (every server flag has an `env`), so a
//! resolved value is `flag_or_env.or(file).unwrap_or(default)`. The file's keys are
//! the flags' names without the dashes in front (`data-dir`, `log-level`, ...), and
//! the same struct, [`FileConfig`], both reads the file and prints the result, so
//! what `--print-config` prints is itself a valid `--config` file.
//!
//! To add a setting: a field in [`FileConfig`], its flag in `ServerArgs`, one line in
//! [`resolve`]. A setting that can carry a secret (such as a database URL with a
//! password) is redacted by [`redact`] when printed.

use super::server::ServerArgs;
use crate::error::CommandError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The address `wharf server` listens on when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// The data directory when nothing says otherwise (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "wharf-data";
/// What replaces a secret in `--print-config`.
const REDACTED: &str = "REDACTED";

/// How log lines are written on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--tls`: how the server gets a certificate other than from `--tls-cert` files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// A private CA and a server certificate made in DATA_DIR/tls on first start.
    Auto,
}

/// Where the server's certificate comes from, after layering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// Plain HTTP.
    Off,
    /// `--tls-cert` and `--tls-key`.
    Files(wharf_server::tls::TlsFiles),
    /// `--tls auto`, with the `--tls-san` names.
    Auto { sans: Vec<String> },
}

/// The `--config` file, and the printed result of `--print-config`: every server flag,
/// each optional. Unknown keys are refused, so a typo cannot silently fall back to a
/// default.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_http: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_log_level"
    )]
    pub log_level: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub heartbeat_interval: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub offline_after: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_san: Option<Vec<String>>,
}

/// The server's settings after layering and validation.
pub struct Resolved {
    /// The server library's own options: the one place they are defined.
    pub server: wharf_server::ServerConfig,
    pub liveness: wharf_server::Liveness,
    pub insecure_http: bool,
    pub tls: TlsSetting,
    pub log_format: LogFormat,
    /// `None`: `RUST_LOG` filters, else `info`.
    pub log_level: Option<String>,
}

impl Resolved {
    /// The filter logging uses: the configured one, else `RUST_LOG` when it is a
    /// valid filter, else `info`.
    pub fn effective_log_level(&self) -> String {
        self.log_level
            .clone()
            .or_else(|| {
                std::env::var("RUST_LOG")
                    .ok()
                    .filter(|level| check_log_level(level).is_ok())
            })
            .unwrap_or_else(|| "info".to_owned())
    }

    /// The settings as a `--config` file, secrets redacted.
    pub fn to_toml(&self) -> Result<String, CommandError> {
        let printed = FileConfig {
            listen: Some(self.server.listen),
            data_dir: Some(self.server.data_dir.clone()),
            database: self.server.database.as_ref().map(|url| url.0.clone()),
            insecure_http: Some(self.insecure_http),
            log_format: Some(self.log_format),
            log_level: Some(self.effective_log_level()),
            heartbeat_interval: Some(self.liveness.heartbeat_interval),
            offline_after: Some(self.liveness.offline_after),
            tls: matches!(self.tls, TlsSetting::Auto { .. }).then_some(TlsMode::Auto),
            tls_cert: match &self.tls {
                TlsSetting::Files(files) => Some(files.cert.clone()),
                _ => None,
            },
            tls_key: match &self.tls {
                TlsSetting::Files(files) => Some(files.key.clone()),
                _ => None,
            },
            tls_san: match &self.tls {
                TlsSetting::Auto { sans } if !sans.is_empty() => Some(sans.clone()),
                _ => None,
            },
        };
        let mut table = toml::Table::try_from(&printed)
            .map_err(|err| anyhow::anyhow!("cannot print the configuration: {err}"))?;
        redact(&mut table);
        Ok(toml::to_string(&table)
            .map_err(|err| anyhow::anyhow!("cannot print the configuration: {err}"))?)
    }
}

/// Reads and checks a `--config` file. Every problem is a usage error (exit 2)
/// naming the file and, where the TOML parser knows them, the line and the key.
pub fn load_file(path: &Path) -> Result<FileConfig, CommandError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CommandError::usage(format!(
            "cannot read the configuration file {}: {err}",
            path.display()
        ))
    })?;
    parse_file(path, &text)
}

/// [`load_file`] on text already read.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, CommandError> {
    toml::from_str(text).map_err(|err| CommandError::usage(describe_error(path, text, &err)))
}

/// One line about a TOML or value error: `FILE, line L, key K: PROBLEM`. The parser's
/// own message spans several lines with a picture of the source; this keeps its
/// first sentence and adds where it is.
fn describe_error(path: &Path, text: &str, err: &toml::de::Error) -> String {
    let problem =
        err.message()
            .trim()
            .replace('\n', " ")
            .replacen("unknown field", "unknown key", 1);
    let Some(span) = err.span() else {
        return format!("{}: {problem}", path.display());
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    // The key is what stands before `=` on that line, when the error points after it
    // (a bad value); an unknown key is named by the message itself.
    let key = line
        .split_once('=')
        .filter(|(key, _)| line_start + key.len() <= start)
        .map(|(key, _)| key.trim().trim_matches('"'))
        .filter(|key| !key.is_empty() && !problem.contains(&format!("`{key}`")));
    match key {
        Some(key) => format!("{}, line {line_no}, key {key}: {problem}", path.display()),
        None => format!("{}, line {line_no}: {problem}", path.display()),
    }
}

/// Layers the flags (and their `WHARF_*` variables, which clap already merged), the
/// file and the defaults, and checks the result.
pub fn resolve(
    args: &ServerArgs,
    insecure_http: Option<bool>,
    file: FileConfig,
) -> Result<Resolved, CommandError> {
    let defaults = wharf_server::Liveness::default();
    let default_listen: SocketAddr = DEFAULT_LISTEN
        .parse()
        .map_err(|err| anyhow::anyhow!("the default address does not parse: {err}"))?;
    let liveness = wharf_server::Liveness {
        heartbeat_interval: args
            .heartbeat_interval
            .or(file.heartbeat_interval)
            .unwrap_or(defaults.heartbeat_interval),
        offline_after: args
            .offline_after
            .or(file.offline_after)
            .unwrap_or(defaults.offline_after),
    };
    if liveness.heartbeat_interval.is_zero()
        || liveness.offline_after <= liveness.heartbeat_interval
    {
        return Err(CommandError::usage(format!(
            "offline-after ({}) must be longer than heartbeat-interval ({}), which must not be 0",
            humantime::format_duration(liveness.offline_after),
            humantime::format_duration(liveness.heartbeat_interval)
        )));
    }
    let log_level = args.log_level.clone().or(file.log_level);
    if let Some(level) = &log_level {
        check_log_level(level).map_err(|err| CommandError::usage(format!("log-level: {err}")))?;
    }
    let tls = resolve_tls(
        args.tls.or(file.tls),
        args.tls_cert.clone().or(file.tls_cert),
        args.tls_key.clone().or(file.tls_key),
        if args.tls_san.is_empty() {
            file.tls_san.unwrap_or_default()
        } else {
            args.tls_san.clone()
        },
    )?;
    Ok(Resolved {
        tls,
        server: wharf_server::ServerConfig {
            listen: args.listen.or(file.listen).unwrap_or(default_listen),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            database: args
                .database
                .clone()
                .or(file.database)
                .map(wharf_server::DatabaseUrl),
        },
        liveness,
        insecure_http: insecure_http.or(file.insecure_http).unwrap_or(false),
        log_format: args
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Text),
        log_level,
    })
}

/// Checks that the TLS settings make one whole: `--tls auto` or a certificate and
/// its key, not both, and `--tls-san` only with `--tls auto`.
fn resolve_tls(
    mode: Option<TlsMode>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    sans: Vec<String>,
) -> Result<TlsSetting, CommandError> {
    match (mode, cert, key) {
        (Some(TlsMode::Auto), None, None) => Ok(TlsSetting::Auto { sans }),
        (Some(TlsMode::Auto), _, _) => Err(CommandError::usage(
            "--tls auto makes its own certificate: give either it or --tls-cert and --tls-key, \
             not both",
        )),
        _ if !sans.is_empty() => Err(CommandError::usage(
            "--tls-san names the certificate that --tls auto makes; it needs --tls auto",
        )),
        (None, Some(cert), Some(key)) => {
            Ok(TlsSetting::Files(wharf_server::tls::TlsFiles { cert, key }))
        }
        (None, Some(cert), None) => Err(CommandError::usage(format!(
            "--tls-cert {} needs --tls-key (the certificate's private key)",
            cert.display()
        ))),
        (None, None, Some(key)) => Err(CommandError::usage(format!(
            "--tls-key {} needs --tls-cert (the certificate chain)",
            key.display()
        ))),
        (None, None, None) => Ok(TlsSetting::Off),
    }
}

/// Refuses plain HTTP on an address other hosts can reach, unless the operator said
/// `--insecure-http`: admin tokens, agent credentials and registry passwords would
/// cross the network in clear text.
pub fn check_listen(listen: SocketAddr, insecure_http: bool) -> Result<(), CommandError> {
    if is_loopback(listen.ip()) || insecure_http {
        return Ok(());
    }
    Err(CommandError::usage(format!(
        "refusing to listen on {listen} without TLS: tokens, agent credentials and registry \
         passwords would cross the network in clear text. Listen on a loopback address \
         (such as 127.0.0.1:7700, behind a TLS-terminating proxy), or pass --insecure-http \
         (WHARF_INSECURE_HTTP=1, or insecure-http = true in the configuration file) on a \
         network you trust"
    )))
}

/// Loopback, for IPv4, IPv6 and IPv4-mapped IPv6 addresses.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A clap value parser for `--log-level`: an `EnvFilter` directive such as `info` or
/// `warn,wharf_server=debug`.
pub fn parse_log_level(value: &str) -> Result<String, String> {
    check_log_level(value)?;
    Ok(value.to_owned())
}

fn check_log_level(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty (write a level such as info or debug)".to_owned());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(drop)
        .map_err(|err| {
            format!("{value:?} is not a log filter ({err}); write a level such as info or debug")
        })
}

fn de_log_level<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(deserializer)?;
    check_log_level(&value).map_err(serde::de::Error::custom)?;
    Ok(Some(value))
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let value = String::deserialize(deserializer)?;
    super::parse_duration(&value)
        .map(Some)
        .map_err(|err| serde::de::Error::custom(format!("{value:?}: {err}")))
}

fn ser_duration<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => {
            serializer.serialize_str(&humantime::format_duration(*duration).to_string())
        }
        None => serializer.serialize_none(),
    }
}

/// Replaces the password of every URL-shaped string value (`scheme://user:password@host`)
/// with [`REDACTED`]. No setting holds a secret of its own today; a database URL will.
pub fn redact(table: &mut toml::Table) {
    for (_, value) in table.iter_mut() {
        redact_value(value);
    }
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::String(text) => {
            if let Some(redacted) = redact_url_password(text) {
                *text = redacted;
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        toml::Value::Table(table) => redact(table),
        _ => {}
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:REDACTED@host/...`; `None` when
/// the text carries no password.
fn redact_url_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!(
        "{scheme}://{user}:{REDACTED}@{host}{}",
        &rest[authority_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://wharf:s3cr@t@db:5432/wharf?sslmode=require").unwrap(),
            "postgres://wharf:REDACTED@db:5432/wharf?sslmode=require"
        );
        assert_eq!(redact_url_password("postgres://wharf@db/wharf"), None);
        assert_eq!(redact_url_password("wharf-data"), None);
        assert_eq!(redact_url_password("http://a/b@c:d"), None);
        let mut table: toml::Table =
            toml::from_str("database = \"postgres://u:pw@h/d\"\nlisten = \"127.0.0.1:1\"").unwrap();
        redact(&mut table);
        let printed = toml::to_string(&table).unwrap();
        assert!(!printed.contains("pw"), "{printed}");
        assert!(printed.contains("postgres://u:REDACTED@h/d"), "{printed}");
        assert!(printed.contains("127.0.0.1:1"), "{printed}");
    }

    #[test]
    fn loopback_covers_both_families() {
        for ip in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["0.0.0.0", "10.0.0.1", "::", "172.17.0.1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let path = Path::new("/etc/wharf/server.toml");
        let text = "listen = \"127.0.0.1:1\"\n\nheartbeat-interval = \"soon\"\n";
        let message = parse_file(path, text).err().unwrap().message().unwrap();
        assert!(
            message.starts_with("/etc/wharf/server.toml, line 3, key heartbeat-interval: "),
            "{message}"
        );
        assert!(message.contains("soon"), "{message}");
    }
}
