//! Accepting connections: how many the server holds at once, how long a client
//! may take to send a request (or sit idle between two), and how shutdown ends
//! them within a bound.
//!
//! axum's `serve` holds every connection for as long as its client likes and
//! waits for all of them at shutdown, so a few clients that open connections and
//! send nothing (or a request a byte a minute) could use up the process's file
//! descriptors, and one stuck client could hold a shutdown for ever. This loop
//! serves the same router with hyper's HTTP/1 connection directly, which gives the
//! three bounds. Under TLS each connection's task first completes the handshake,
//! within `tls::HANDSHAKE_TIMEOUT`, so a slow handshake holds no accept.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// How long a client may take to send a request's headers, counted from when
/// the connection opens or the previous answer was sent: so it is also how long
/// a kept-alive connection may sit idle (hyper has one timer for both). It is
/// longer than the agents' heartbeat interval (10 s), so that an agent's
/// kept-alive connection is reused rather than closed between two heartbeats.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a shutdown waits for requests in flight before it closes their
/// connections anyway. Long polls end at once when shutdown begins; this bounds
/// the rest (a slow client reading a large answer, a console stream).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// File descriptors kept for everything but connections: the database and its
/// WAL, the listener, log files, hook processes' pipes.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The bounds of [`serve_connections`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections held at once; when all are taken, new ones wait in the
    /// kernel's accept queue until one ends.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl ConnectionLimits {
    /// What this process can hold: its file descriptor limit (raised to the hard
    /// limit first, as a server for thousands of agents needs) less those kept
    /// for other uses.
    pub fn for_this_process() -> Self {
        let descriptors = raise_descriptor_limit();
        Self {
            max_connections: descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(64) as usize,
            header_read_timeout: HEADER_READ_TIMEOUT,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// Raises the soft limit of open files to the hard limit; the soft limit after.
fn raise_descriptor_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(hard)) = (limit.current, limit.maximum) {
        if current < hard {
            limit.current = Some(hard);
            if setrlimit(Resource::Nofile, limit).is_ok() {
                tracing::debug!(from = current, to = hard, "raised the open files limit");
                return hard;
            }
            return current;
        }
    }
    limit.current.unwrap_or(1024)
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown`
/// completes; then stops accepting, lets requests in flight finish for
/// `shutdown_grace` at most, and returns.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut warned_full = false;
    loop {
        // A slot first: while every one is taken, new connections wait in the
        // kernel's queue (8,192 long) rather than costing a descriptor here.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !warned_full {
                    tracing::warn!(
                        max = limits.max_connections,
                        "every connection slot is taken; new connections wait"
                    );
                    warned_full = true;
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors (EMFILE) or a connection reset before it
                    // was accepted: nothing to serve; wait a moment if the former.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if slots.available_permits() > limits.max_connections / 10 {
            warned_full = false;
        }
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let closing = closing.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_one(stream, service, limits, closing).await,
                Some(acceptor) => {
                    let mut closing_early = closing.clone();
                    let handshake = tokio::select! {
                        done = tokio::time::timeout(
                            crate::tls::HANDSHAKE_TIMEOUT,
                            acceptor.accept(stream),
                        ) => done,
                        _ = closing_early.wait_for(|closing| *closing) => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => serve_one(stream, service, limits, closing).await,
                        // A client that does not trust the certificate ends the
                        // handshake; that is the client's business, not an error here.
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every slot back means every connection ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(
            open,
            grace_secs = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace; closing them"
        );
    }
}

/// Serves HTTP/1 on one connection until it ends or the server closes; then ends
/// it after the request in flight, if any.
async fn serve_one<S, T>(
    stream: S,
    service: T,
    limits: ConnectionLimits,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: tower::Service<Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    T::Future: Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let closed = tokio::select! {
        _ = connection.as_mut() => true,
        _ = closing.wait_for(|closing| *closing) => false,
    };
    if !closed {
        // Ends the connection after the request in flight, if any.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}
