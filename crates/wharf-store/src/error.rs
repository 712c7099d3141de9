//! The store's error type. Variants carry what was looked for so that the API can
//! answer with a precise message without parsing strings.

/// Why a store call failed. Everything but `Backend` is the caller's fault and maps
/// to a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} {name:?} is in use by {by}")]
    InUse {
        kind: &'static str,
        name: String,
        by: String,
    },
    #[error(
        "group {group} already has an active release, {release}; wait for it to end or cancel it"
    )]
    ActiveRelease { group: String, release: String },
    #[error("{0}")]
    Conflict(String),
    #[error("registration refused: {0}")]
    RegistrationRefused(&'static str),
    /// The store was closed (the server is shutting down) or lost its database
    /// thread.
    #[error("the store is closed")]
    Closed,
    /// A store call panicked (a bug); the store goes on with the next call.
    #[error("a database call failed unexpectedly")]
    Panicked,
    #[error("the database failed")]
    Backend(#[source] rusqlite::Error),
    /// A PostgreSQL statement or connection failed.
    #[error("the database failed")]
    Postgres(#[source] tokio_postgres::Error),
    /// No PostgreSQL connection could be had: the server is unreachable, refused
    /// the credentials, or every connection of the pool stayed busy too long.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Backend(err)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        StoreError::Postgres(err)
    }
}
