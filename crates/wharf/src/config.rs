//! Which server and token a client command uses: `--server`/`--token` flags, then
//! `WHARF_SERVER`/`WHARF_TOKEN`, then the file `wharf login` writes at
//! `CONFIG_DIR/wharf/config.json` (`$XDG_CONFIG_HOME`, else `~/.config`, on Linux).

use crate::error::CommandError;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What `wharf login` saves. Not `Debug`, so the token cannot end up in a log line.
#[derive(Serialize, Deserialize)]
pub struct SavedLogin {
    pub server: String,
    pub token: String,
    /// The CA the server's certificate must chain to (PEM), from `--ca-cert` at
    /// login; absent: the web PKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// The file that CA was read from, named in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_file: Option<String>,
}

/// The server and token a command talks with.
pub struct Connection {
    pub server: String,
    pub token: String,
    /// The CA saved at login for this server, as (file it came from, PEM).
    pub saved_ca: Option<(String, String)>,
}

/// The path of the configuration file.
pub fn config_path() -> Result<PathBuf, CommandError> {
    let dir = dirs::config_dir().ok_or_else(|| {
        CommandError::Config(
            "cannot find the configuration directory: set XDG_CONFIG_HOME or HOME".to_owned(),
        )
    })?;
    Ok(dir.join("wharf").join("config.json"))
}

/// Reads the saved login; `None` when there is no file.
pub fn load(path: &Path) -> Result<Option<SavedLogin>, CommandError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(anyhow::Error::new(err)
                .context(format!("cannot read {}", path.display()))
                .into())
        }
    };
    // serde_json's message names a line and column, never the content.
    let saved = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid wharf configuration file", path.display()))?;
    Ok(Some(saved))
}

/// Writes the login so that only its owner can read it: the directory is made 0700
/// and the file 0600 from its creation (written to a temporary file, then renamed,
/// so a crash leaves either the old file or the new one).
pub fn save(path: &Path, login: &SavedLogin) -> Result<(), CommandError> {
    let dir = path
        .parent()
        .context("the configuration path has no directory")?;
    create_private_dir(dir)?;
    let text = serde_json::to_string_pretty(login).context("cannot encode the configuration")?;
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let result = write_private_file(&tmp, text.as_bytes()).and_then(|()| {
        fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // The directory may have existed with a wider mode; it is ours, so narrow it.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the permissions of {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Picks the server and the token: each from its flag or environment variable when
/// given, else from the saved login.
///
/// The saved token is only used with the saved server: when `--server` or
/// `WHARF_SERVER` names another server, sending it the token saved for the first
/// would hand that credential to a server it was never meant for.
pub fn resolve(
    server: Option<&str>,
    token: Option<&str>,
    path: &Path,
) -> Result<Connection, CommandError> {
    let given = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (server, token) = (given(server), given(token));
    if let (Some(server), Some(token)) = (&server, &token) {
        return Ok(Connection {
            server: server.clone(),
            token: token.clone(),
            saved_ca: None,
        });
    }
    let saved = load(path)?;
    let server = match (server, &saved) {
        (Some(server), _) => server,
        (None, Some(saved)) => saved.server.clone(),
        (None, None) => {
            return Err(CommandError::Config(format!(
                "no Wharf server configured: run `wharf login --server URL --token TOKEN`, \
                 or set WHARF_SERVER and WHARF_TOKEN (or pass --server and --token); \
                 no login saved in {}",
                path.display()
            )))
        }
    };
    // The saved CA goes with the saved server only, like the token.
    let saved_ca = saved
        .as_ref()
        .filter(|saved| same_server(&saved.server, &server))
        .and_then(|saved| {
            let pem = saved.ca_cert.clone()?;
            Some((
                saved
                    .ca_cert_file
                    .clone()
                    .unwrap_or_else(|| "the saved login".to_owned()),
                pem,
            ))
        });
    let token = match (token, saved) {
        (Some(token), _) => token,
        (None, Some(saved)) if same_server(&saved.server, &server) => saved.token,
        (None, Some(saved)) => {
            return Err(CommandError::Config(format!(
                "no token for {server}: the saved login is for {}; pass --token or set \
                 WHARF_TOKEN, or run `wharf login --server {server} --token TOKEN`",
                saved.server
            )))
        }
        (None, None) => {
            return Err(CommandError::Config(
                "no API token configured: run `wharf login --server URL --token TOKEN`, \
                 or set WHARF_TOKEN (or pass --token)"
                    .to_owned(),
            ))
        }
    };
    Ok(Connection {
        server,
        token,
        saved_ca,
    })
}

/// Refuses a plain `http://` server that is not on this host unless `insecure_http`:
/// the token (or the agent's credential, and the registry passwords and scripts it
/// receives) would cross the network in clear text. `https://` URLs and URLs that do
/// not parse pass here (the client reports the latter).
pub fn check_transport(server: &str, insecure_http: bool) -> Result<(), CommandError> {
    if insecure_http || !is_remote_http(server) {
        return Ok(());
    }
    Err(CommandError::Config(format!(
        "refusing to talk plain HTTP to {}: the token and everything else would cross the \
         network in clear text. Use an https:// URL, or pass --insecure-http (or set \
         WHARF_INSECURE_HTTP=1) on a network you trust",
        server.trim()
    )))
}

/// Whether `server` is an `http://` URL whose host is not a loopback address or
/// `localhost`.
fn is_remote_http(server: &str) -> bool {
    let Ok(url) = url::Url::parse(server.trim()) else {
        return false;
    };
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            !(ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
        None => true,
    }
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(dir: &Path, server: &str, token: &str) -> PathBuf {
        let path = dir.join("wharf").join("config.json");
        save(
            &path,
            &SavedLogin {
                server: server.into(),
                token: token.into(),
                ca_cert: None,
                ca_cert_file: None,
            },
        )
        .unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_saved_login() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), "http://a:1", "saved");
        let c = resolve(Some("http://b:2"), Some("given"), &path).unwrap();
        assert_eq!(
            (c.server.as_str(), c.token.as_str()),
            ("http://b:2", "given")
        );
        let c = resolve(None, Some("given"), &path).unwrap();
        assert_eq!(
            (c.server.as_str(), c.token.as_str()),
            ("http://a:1", "given")
        );
        let c = resolve(Some("http://a:1/"), None, &path).unwrap();
        assert_eq!(c.token, "saved");
    }

    #[test]
    fn the_saved_token_is_not_sent_to_another_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), "http://a:1", "saved");
        let err = resolve(Some("http://evil:2"), None, &path).err().unwrap();
        assert!(matches!(err, CommandError::Config(_)));
        assert!(!err.message().unwrap().contains("saved\""));
    }

    #[test]
    fn nothing_configured_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(None, None, &dir.path().join("none.json"))
            .err()
            .unwrap();
        let message = err.message().unwrap();
        assert!(message.contains("wharf login"), "{message}");
        assert!(message.contains("WHARF_SERVER"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), "http://a:1", "t");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Saving again replaces the file.
        let path = saved(dir.path(), "http://b:1", "u");
        assert_eq!(load(&path).unwrap().unwrap().server, "http://b:1");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn plain_http_is_refused_off_this_host() {
        for remote in [
            "http://10.0.0.5:7700",
            "http://wharf.example.com",
            "HTTP://0.0.0.0:1/",
            "http://[fe80::1]:7700",
        ] {
            let err = check_transport(remote, false).err().unwrap();
            assert!(matches!(err, CommandError::Config(_)), "{remote}");
            assert!(
                err.message().unwrap().contains("--insecure-http"),
                "{remote}"
            );
            assert!(check_transport(remote, true).is_ok(), "{remote}");
        }
        for local in [
            "http://127.0.0.1:7700",
            "http://localhost:7700/",
            "http://[::1]:7700",
            "http://127.1.2.3",
            "https://wharf.example.com",
            "not a url",
        ] {
            assert!(check_transport(local, false).is_ok(), "{local}");
        }
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, "{not json").unwrap();
        let err = load(&path).err().unwrap();
        assert!(err.message().unwrap().contains("config.json"));
    }
}
