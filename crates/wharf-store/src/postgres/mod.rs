//! The PostgreSQL backend of [`Store`](crate::Store): a pool of connections to
//! one database, shared by as many server processes as run on it.
//!
//! A store call is one transaction on a pooled connection, its statements
//! prepared once per connection (`query.rs`). Writes run at READ COMMITTED and
//! take row locks where SQLite relied on having a single writer: a write that
//! reads a row before it changes it (a release's state, a step's output, a
//! scaling group's lease, the task a step report writes to) reads it `FOR
//! UPDATE` / `FOR SHARE`, conditional UPDATEs re-check their condition on the
//! newest row version, and unique indexes are the backstop. Nothing is kept in
//! the process between calls, so several processes may share the database. A
//! transaction that loses a serialization conflict or a deadlock is rolled back
//! whole and run again (a few times). Reads of several statements run in a
//! REPEATABLE READ, READ ONLY transaction (one snapshot per call); a read of one
//! statement runs on its own, without BEGIN and COMMIT. One submodule per table family holds the
//! SQL; `store.rs` implements the trait over them.

mod agent_writes;
mod apps;
mod convert;
mod deployments;
mod execs;
pub(crate) mod failure;
mod groups;
mod instances;
mod migrate;
mod query;
mod registries;
mod releases;
mod scaling;
mod steps;
mod store;
mod tasks;
mod tokens;

use crate::{StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::NoTls;

/// How many connections one store (one server process) opens at most. Calls
/// beyond that wait for a free connection; every replica counts against the
/// server's `max_connections`.
const POOL_SIZE: usize = 16;

/// How long a call waits for a free connection, and for a new one to open,
/// before it fails with [`StoreError::Unavailable`].
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a transaction that lost a serialization conflict or a
/// deadlock is run again before its failure is returned.
pub(crate) const RETRIES: u32 = 8;

/// A [`Store`](crate::Store) kept in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.write_str("PostgresStore")
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`
    /// or the key=value form) and brings its schema up to date. Fails with
    /// [`StoreError::Unavailable`] for a URL that does not parse, a server that
    /// does not answer or refuses the credentials, and with
    /// [`StoreError::Corrupt`] for a database of a newer schema.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        let config: tokio_postgres::Config = url.parse().map_err(|err| {
            // The parser's message names the bad part, never the password.
            StoreError::Unavailable(format!("the database URL is not valid: {}", chain(&err)))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| StoreError::Unavailable(format!("no connection pool: {err}")))?;
        let store = PostgresStore { pool };
        let mut client = store.client().await?;
        migrate::run(&mut client).await?;
        Ok(store)
    }

    /// Closes the pool: connections go as their calls end, and calls made
    /// afterwards fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.pool.close();
    }

    /// A connection from the pool.
    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(unavailable)
    }
}

/// Maps a failure to get a pooled connection.
fn unavailable(err: PoolError) -> StoreError {
    match err {
        PoolError::Closed => StoreError::Closed,
        PoolError::Timeout(_) => {
            StoreError::Unavailable("no database connection became free in time".to_owned())
        }
        // The server refused or did not answer: its message (connection refused,
        // authentication failed, no such database) is what the operator needs.
        PoolError::Backend(err) => StoreError::Unavailable(match err.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => chain(&err),
        }),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// An error and its sources, as one line: tokio-postgres says what failed
/// ("error connecting to server") and its source why ("Connection refused").
fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Runs `$body` (an expression that may use `.await?`) in a transaction of
/// isolation `$isolation` on a pooled connection, binding the transaction to
/// `$tx`; commits when the body succeeds, rolls back when it fails (dropping
/// the transaction does), and runs it all again when it failed for a reason a
/// new attempt may not meet (`failure::retryable`).
macro_rules! in_transaction {
    ($store:expr, $isolation:expr, $read_only:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let mut client = $store.client().await?;
            let $tx = client
                .build_transaction()
                .isolation_level($isolation)
                .read_only($read_only)
                .start()
                .await?;
            let result = async { Ok::<_, $crate::StoreError>($body) }.await;
            let result = match result {
                Ok(answer) => $tx
                    .commit()
                    .await
                    .map(|()| answer)
                    .map_err($crate::StoreError::from),
                Err(err) => Err(err),
            };
            match result {
                Err(err)
                    if $crate::postgres::failure::retryable(&err)
                        && attempt < $crate::postgres::RETRIES =>
                {
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

/// [`in_transaction`] for a write.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        in_transaction!(
            $store,
            tokio_postgres::IsolationLevel::ReadCommitted,
            false,
            |$tx| $body
        )
    };
}

/// [`in_transaction`] for a read: one snapshot for the whole call.
macro_rules! read_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        in_transaction!(
            $store,
            tokio_postgres::IsolationLevel::RepeatableRead,
            true,
            |$tx| $body
        )
    };
}

/// Runs `$body` on a pooled connection outside any transaction, binding the
/// connection to `$client`: for a read of one statement, which is a snapshot of
/// its own, without the two round trips of BEGIN and COMMIT.
macro_rules! read_one {
    ($store:expr, |$client:ident| $body:expr) => {{
        let $client = $store.client().await?;
        Ok::<_, $crate::StoreError>($body)
    }};
}

use in_transaction;
use read_one;
use read_tx;
use write_tx;
