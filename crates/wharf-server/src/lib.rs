//! Wharf's control plane as a library: [`bind`] opens the store (SQLite in the
//! data directory, or the PostgreSQL database of [`ServerConfig::database`]), makes sure an admin token exists and binds a listener;
//! [`BoundServer::serve`] answers the HTTP API, the agent protocol, `/healthz` and
//! `/metrics` until the shutdown future completes. Tests run the real server on
//! port 0; [`router`] gives handler tests the same routes without a network.

mod api;
mod auth;
pub mod backup;
mod console;
mod engine;
mod error;
mod extract;
mod group_commit;
mod metrics;
mod notify;
mod ops;
mod overload;
mod recent;
mod release_views;
mod secrets;
mod serve;
mod state;
pub mod tls;
pub mod tls_auto;
mod view_cache;
mod views;

pub use error::ApiError;
pub use overload::MAX_FAILURES;
pub use secrets::{hash_token, SecretBox};
pub use serve::ConnectionLimits;
pub use state::{AppState, Liveness};

use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use wharf_store::{ApiTokenRecord, PostgresStore, SqliteStore, Store};

/// Where and how to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The PostgreSQL database to keep the store in; `None` keeps it in SQLite,
    /// `DATA_DIR/wharf.db`. The data directory still holds the secret key and
    /// the admin token.
    pub database: Option<DatabaseUrl>,
}

/// A PostgreSQL connection URL (`postgres://user:password@host:port/db`). It may
/// hold a password, so its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot prepare the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the store at {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: wharf_store::StoreError,
    },
    /// The PostgreSQL database could not be opened; the URL is not repeated,
    /// since it may hold a password.
    #[error("cannot open the PostgreSQL database")]
    Database(#[source] wharf_store::StoreError),
    #[error("cannot use the secret key at {path}")]
    SecretKey {
        path: PathBuf,
        #[source]
        source: secrets::SecretKeyError,
    },
    #[error(
        "the store holds registry passwords sealed with a key, but {path} is missing; \
         restore the secret.key that was backed up with the database (a new key cannot \
         open them)"
    )]
    SecretKeyMissing { path: PathBuf },
    #[error(
        "{path} does not open the registry passwords sealed in the store (registry \
         {registry:?}): it is not the key they were sealed with; restore the secret.key \
         that was backed up with the database"
    )]
    SecretKeyMismatch { path: PathBuf, registry: String },
    #[error("cannot read the store's sealed values")]
    SealedValues(#[source] wharf_store::StoreError),
    #[error("cannot create the admin token")]
    AdminToken(#[source] wharf_store::StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A server with its store open and its listener bound, ready to serve.
pub struct BoundServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    admin_token_path: PathBuf,
    admin_token_created: bool,
    /// The connection bounds; those of this process unless set.
    limits: Option<ConnectionLimits>,
    /// Serve HTTPS with this certificate; plain HTTP when `None`.
    tls: Option<tls::ServerTls>,
}

/// Opens (or creates) the data directory, the store and the secret key, creates the
/// admin token on first start, and binds the listener.
pub async fn bind(config: ServerConfig) -> Result<BoundServer, ServerError> {
    bind_with(config, Liveness::default()).await
}

/// [`bind`] with other heartbeat timings (tests use short ones to see instances go
/// offline quickly).
pub async fn bind_with(
    config: ServerConfig,
    liveness: Liveness,
) -> Result<BoundServer, ServerError> {
    let data_dir = config.data_dir;
    secrets::create_private_dir(&data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let store: Arc<dyn Store> =
        match &config.database {
            Some(DatabaseUrl(url)) => Arc::new(
                PostgresStore::connect(url)
                    .await
                    .map_err(ServerError::Database)?,
            ),
            None => {
                let db_path = data_dir.join("wharf.db");
                Arc::new(SqliteStore::open(&db_path).await.map_err(|source| {
                    ServerError::Store {
                        path: db_path.clone(),
                        source,
                    }
                })?)
            }
        };
    if config.database.is_none() {
        keep_database_files_private(&data_dir);
    }
    let key_path = data_dir.join("secret.key");
    let secret_box = open_secret_key(store.as_ref(), &key_path).await?;
    let admin_token_path = data_dir.join("admin.token");
    let admin_token_created = ensure_admin_token(store.as_ref(), &admin_token_path).await?;
    let listener = listen(config.listen).map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    Ok(BoundServer {
        listener,
        local_addr,
        state: AppState::with_liveness(store, secret_box, liveness),
        admin_token_path,
        admin_token_created,
        limits: None,
        tls: None,
    })
}

/// Loads the key that seals registry passwords, creating it on first start. A
/// store that already holds sealed values refuses a missing key (a new one would
/// be made and could open none of them: every pull of those registries would
/// fail later, far from the cause) and a key that does not open them.
async fn open_secret_key(store: &dyn Store, key_path: &Path) -> Result<SecretBox, ServerError> {
    let sealed = store
        .registry_list()
        .await
        .map_err(ServerError::SealedValues)?
        .into_iter()
        .find_map(|registry| {
            registry
                .password_sealed
                .map(|sealed| (registry.name, sealed))
        });
    if sealed.is_some() && !key_path.exists() {
        return Err(ServerError::SecretKeyMissing {
            path: key_path.to_path_buf(),
        });
    }
    let secret_box =
        SecretBox::load_or_create(key_path).map_err(|source| ServerError::SecretKey {
            path: key_path.to_path_buf(),
            source,
        })?;
    if let Some((registry, sealed)) = sealed {
        if secret_box.open(&sealed).is_err() {
            return Err(ServerError::SecretKeyMismatch {
                path: key_path.to_path_buf(),
                registry,
            });
        }
    }
    Ok(secret_box)
}

/// The SQLite files 0600, whatever the umask made them (SQLite creates its files
/// as the umask says, and its -wal and -shm files with the database file's mode).
/// The data directory is made 0700 when the server creates it; one that exists
/// already is the operator's (it may be shared, as /tmp is), so its mode is not
/// changed, only warned about when others may read it.
fn keep_database_files_private(data_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(data_dir) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %data_dir.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the data directory is open to other users; `chmod 700` it (it holds the database, secret.key and admin.token)"
            );
        }
    }
    for name in ["wharf.db", "wharf.db-wal", "wharf.db-shm"] {
        let path = data_dir.join(name);
        if let Err(err) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %err, "cannot make it private");
            }
        }
    }
}

/// How many connections may wait to be accepted (the kernel caps it at
/// `net.core.somaxconn`). A fleet's agents connect together: as thousands start
/// at once, or reconnect after the server restarted. With tokio's default of
/// 1,024, 10,000 agents connecting at once overflowed the queue and the kernel
/// fell back to SYN cookies (BENCHMARKS.md).
const LISTEN_BACKLOG: u32 = 8192;

/// A listening socket on `addr`, as `TcpListener::bind` makes one (the address
/// reusable at once after a restart) but with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl BoundServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn admin_token_path(&self) -> &Path {
        &self.admin_token_path
    }

    /// Serves with other connection bounds than this process's (tests use short
    /// timeouts and few connections).
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Serves HTTPS with `tls`'s certificate (which [`tls::ServerTls::reload`]
    /// can replace while serving).
    pub fn with_tls(mut self, tls: tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Whether this start created the admin token (the first start on a data dir).
    pub fn admin_token_created(&self) -> bool {
        self.admin_token_created
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        tracing::info!(
            addr = %self.local_addr,
            tls = self.tls.is_some(),
            "wharf server listening"
        );
        let acceptor = self.tls.as_ref().map(tls::ServerTls::acceptor);
        let wakeups = self.state.wakeups.clone();
        let driver = tokio::spawn(engine::driver::run(self.state.clone()));
        let app = router(self.state);
        // Long polls and the driver end as soon as shutdown begins, so the graceful
        // shutdown does not wait out every agent's poll.
        let shutdown = async move {
            shutdown.await;
            wakeups.shut_down();
        };
        serve::serve_connections(
            self.listener,
            app,
            self.limits
                .unwrap_or_else(ConnectionLimits::for_this_process),
            acceptor,
            shutdown,
        )
        .await;
        let _ = driver.await;
        Ok(())
    }
}

/// Every route of the server over the given state: the API's, with the web
/// console's merged in.
pub fn router(state: AppState) -> Router {
    let in_flight = state.guard.in_flight.clone();
    api::router(state, console::routes())
        .layer(axum::middleware::from_fn_with_state(in_flight, api::shed))
}

/// Creates the admin token when the store has none. The file is written before the
/// hash is stored: a crash in between leaves a token file that the next start
/// replaces, never a stored token nobody knows.
async fn ensure_admin_token(store: &dyn Store, path: &Path) -> Result<bool, ServerError> {
    if store
        .api_token_count()
        .await
        .map_err(ServerError::AdminToken)?
        > 0
    {
        return Ok(false);
    }
    let token = secrets::generate_secret(secrets::ADMIN_TOKEN_PREFIX);
    secrets::write_private_file(path, token.as_bytes()).map_err(|source| ServerError::DataDir {
        path: path.to_path_buf(),
        source,
    })?;
    let record = ApiTokenRecord {
        id: secrets::generate_id("tok"),
        hash: hash_token(&token),
        role: "admin".into(),
        created_at: chrono::Utc::now(),
    };
    store
        .api_token_create(&record)
        .await
        .map_err(ServerError::AdminToken)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listening socket's backlog as the kernel holds it: `ss` (iproute2)
    /// shows it as a listening socket's Send-Q.
    fn kernel_backlog(port: u16) -> u32 {
        let out = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) to read the socket's backlog");
        let out = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"LISTEN"), "ss answered {out:?}");
        fields[2].parse().unwrap()
    }

    #[tokio::test]
    async fn the_server_listens_with_a_backlog_for_a_fleet_connecting_at_once() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(kernel_backlog(port), LISTEN_BACKLOG.min(somaxconn));
    }
}
