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
    /// The store cannot take the call now but may soon; nothing of the call was
    /// done. SQLite: too many calls wait for it already. PostgreSQL: no
    /// connection could be had (the server is unreachable, refused the
    /// credentials, or every connection of the pool stayed busy too long).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Why trying the call again later may succeed where it failed now, if it
    /// may: the store was unavailable, or the database could not be written for a
    /// reason that passes (a full disk, a lock held by another process, an I/O
    /// error). The API answers these with 503 and `Retry-After`, not 500.
    pub fn transient_reason(&self) -> Option<String> {
        match self {
            StoreError::Unavailable(why) => Some(why.clone()),
            StoreError::Closed => Some("the server is shutting down".to_owned()),
            StoreError::Backend(err) => {
                let code = err.sqlite_error_code()?;
                use rusqlite::ErrorCode;
                let why = match code {
                    ErrorCode::DiskFull => "the disk holding the database is full",
                    ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                        "the database is locked by another writer"
                    }
                    ErrorCode::SystemIoFailure => {
                        "the database could not be read or written (I/O error)"
                    }
                    ErrorCode::ReadOnly => "the database cannot be written (read-only)",
                    _ => return None,
                };
                Some(why.to_owned())
            }
            StoreError::Postgres(err) => postgres_transient(err).map(str::to_owned),
            _ => None,
        }
    }
}

/// Why a PostgreSQL failure may pass, if it may: the connection was lost, or
/// the server is short of resources (disk full among them), shutting down or
/// not yet accepting connections (SQLSTATE classes 08 and 53, and 57P0x).
fn postgres_transient(err: &tokio_postgres::Error) -> Option<&'static str> {
    if err.is_closed() {
        return Some("the connection to the database was lost");
    }
    let code = err.code()?.code();
    if code == "53100" {
        Some("the disk holding the database is full")
    } else if code.starts_with("08") {
        Some("the connection to the database failed")
    } else if code.starts_with("53") {
        Some("the database is short of resources")
    } else if code.starts_with("57P") {
        Some("the database is shutting down or starting")
    } else {
        None
    }
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
