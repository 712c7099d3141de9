//! [`OpError`]: why an operation did not happen, in the service layer's terms. It
//! is not an HTTP type: the API maps it to a status and an error body
//! (`error.rs`), the console to the message it shows.

use wharf_domain::access::Role;
use wharf_domain::ValidationError;
use wharf_store::StoreError;

/// The kinds of conflict with what exists; each has the stable code the API gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    AlreadyExists,
    InUse,
    /// The group already has an active release or exec.
    ActiveRelease,
    /// The store refused a change of state that raced with another.
    Raced,
    /// The group has no instances to act on.
    EmptyGroup,
    NothingToRollBack,
    NotPaused,
    AlreadyFinished,
}

impl Conflict {
    /// The code of the API's error body.
    pub fn code(self) -> &'static str {
        match self {
            Self::AlreadyExists => "already_exists",
            Self::InUse => "in_use",
            Self::ActiveRelease => "active_release",
            Self::Raced => "conflict",
            Self::EmptyGroup => "empty_group",
            Self::NothingToRollBack => "nothing_to_roll_back",
            Self::NotPaused => "not_paused",
            Self::AlreadyFinished => "already_finished",
        }
    }
}

/// Why an operation did not happen. The messages are the ones people see.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Nothing has the id or name asked for; `what` says what was looked for.
    #[error("{what}")]
    NotFound { what: String },
    #[error("{message}")]
    Conflict { kind: Conflict, message: String },
    /// A value breaks a rule; `field` names it as the request spelled it.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// An agent's registration was refused (its token is unknown, expired or used up).
    #[error("{message}")]
    RegistrationRefused { message: String },
    /// The caller's role or scope does not allow the operation.
    #[error("this needs the {needs} role")]
    Forbidden { needs: Role },
    /// The store or the server's key failed; the cause is logged where it happened.
    #[error("the server failed; see its log")]
    Unavailable,
    /// The store cannot take the call now but may soon (stalled, full,
    /// overloaded: `StoreError::transient_reason`); nothing was done.
    #[error("the server cannot take this request now: {reason}; try again shortly")]
    TryLater { reason: String },
}

pub type OpResult<T> = Result<T, OpError>;

impl OpError {
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn conflict(kind: Conflict, message: impl Into<String>) -> Self {
        Self::Conflict {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ValidationError> for OpError {
    fn from(err: ValidationError) -> Self {
        let message = format!("{}: {}", err.field, err.message);
        Self::invalid(err.field, message)
    }
}

impl From<StoreError> for OpError {
    fn from(err: StoreError) -> Self {
        if let Some(reason) = err.transient_reason() {
            tracing::warn!(error = ?err, "the store cannot take a call now");
            return Self::TryLater { reason };
        }
        match &err {
            StoreError::NotFound { .. } => Self::not_found(err.to_string()),
            StoreError::AlreadyExists { .. } => {
                Self::conflict(Conflict::AlreadyExists, err.to_string())
            }
            StoreError::InUse { .. } => Self::conflict(Conflict::InUse, err.to_string()),
            StoreError::ActiveRelease { .. } => {
                Self::conflict(Conflict::ActiveRelease, err.to_string())
            }
            StoreError::Conflict(_) => Self::conflict(Conflict::Raced, err.to_string()),
            StoreError::RegistrationRefused(why) => Self::RegistrationRefused {
                message: (*why).to_owned(),
            },
            StoreError::Backend(_)
            | StoreError::Postgres(_)
            | StoreError::Unavailable(_)
            | StoreError::Corrupt(_)
            | StoreError::Closed
            | StoreError::Panicked => {
                tracing::error!(error = ?err, "store failure");
                Self::Unavailable
            }
        }
    }
}

/// A failed group commit: 503 when the store may take the write later, else a
/// failure of the server.
impl From<crate::group_commit::BatchFailed> for OpError {
    fn from(failed: crate::group_commit::BatchFailed) -> Self {
        match failed.transient {
            Some(reason) => Self::TryLater { reason },
            None => Self::Unavailable,
        }
    }
}

impl From<crate::release_views::ViewError> for OpError {
    fn from(err: crate::release_views::ViewError) -> Self {
        match err {
            crate::release_views::ViewError::Store(err) => err.into(),
            // Logged where it happened.
            crate::release_views::ViewError::Build => Self::Unavailable,
        }
    }
}
